"""Model-written code never runs unisolated by default, and set-up installs the sandbox.

- `process` runs environment code only with allow_unisolated=true; `auto` never falls back to it.
- A bubblewrap that is installed but cannot run (a container without user namespaces, a broken binary)
  is found at start, with one line saying what is wrong, not a worker-pool traceback.
- scripts/system-deps.sh (what `make run`, `make test` and .ci/run use) installs what is missing as root
  and, without root, prints the exact command and stops. A stand-in apt-get on PATH records its calls.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from envs.sandbox.limits import Limits

from envs.errors import SandboxUnavailable

from envs.sandbox import bwrap

from envs.sandbox.backends import make_pool, resolve_backend
from tests.conftest import ROOT, evoforge

DEPS = ROOT / "scripts" / "system-deps.sh"


def hostile_file(tmp_path: Path) -> tuple[Path, Path]:
    """An environment whose loading leaves a mark outside any sandbox; refusal must come before it runs."""
    mark = tmp_path / "ran.txt"
    src = tmp_path / "hostile_env.py"
    src.write_text(f"""import random
random._os.system('touch {mark}')
class E:
    name = "e"
    def sample(self, rng, d): return {{"x": 1}}
    def prompt(self, inst): return "p"
    def reference(self, inst): return "1"
    def score(self, inst, response): return 1.0
""")
    return src, mark


@pytest.fixture
def fake_bwrap(tmp_path, monkeypatch):
    """bubblewrap installed but unable to start a sandbox, as in a container without user namespaces."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    bwrap.available.cache_clear()
    yield bindir
    bwrap.available.cache_clear()


def test_process_backend_needs_the_opt_in_before_any_code_runs(tmp_path):
    src, mark = hostile_file(tmp_path)
    with pytest.raises(SandboxUnavailable, match="allow_unisolated=true"):
        make_pool("process", 1, Limits())
    r = evoforge("env", "check", str(src), "--backend", "process", timeout=120)
    assert r.returncode == 2 and "--allow-unisolated" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not mark.exists()


def test_train_refuses_process_without_opt_in_in_one_line(tmp_path):
    src, mark = hostile_file(tmp_path)
    run_dir = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "cluster.train", f"env.name={src}", "env.sandbox.backend=process",
                        f"run_dir={run_dir}", "steps=1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("evoforge: error: env.sandbox.backend=process")
    assert "Traceback" not in r.stderr and not mark.exists()
    assert not (run_dir / "metrics.jsonl").exists()


def test_process_backend_with_the_opt_in_runs_in_a_clean_environment(monkeypatch):
    monkeypatch.setenv("EVOFORGE_TEST_SECRET", "s3cret")
    scratches = set(Path(tempfile.gettempdir()).glob("evoforge-unisolated-*"))
    with pytest.warns(UserWarning, match="NOT isolated"):
        pool = make_pool("process", 1, Limits(), allow_unisolated=True)
    with pool:
        assert pool.isolated is False
        pool.load("env", """import json
class E:
    name = "e"
    def sample(self, rng, d): return {"x": 1}
    def prompt(self, inst): return "p"
    def reference(self, inst): return "1"
    def score(self, inst, response):
        return 1.0 if response in json.dumps(sorted(__import__('os').environ)) else 0.0
""".replace("__import__('os')", "__import__('random')._os"))
        # the environment sees no variable of the parent's (an allowed import would not hide one)
        assert pool.score("env", [{"data": {"x": 1}, "response": "EVOFORGE_TEST_SECRET"}])[0].score == 0.0
    assert set(Path(tempfile.gettempdir()).glob("evoforge-unisolated-*")) == scratches  # its scratch is gone


def test_auto_never_falls_back_to_process(monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    bwrap.available.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable, match="bubblewrap .*not installed.*apt-get install"):
            resolve_backend("auto", allow_unisolated=True)
    finally:
        bwrap.available.cache_clear()


def test_broken_bwrap_is_found_at_start(fake_bwrap):
    why = bwrap.available()
    assert why and "cannot start a sandbox" in why and "No permissions to create new namespace" in why
    with pytest.raises(SandboxUnavailable, match="env.sandbox.backend=docker"):
        make_pool("auto", 2, Limits())


def test_train_with_a_broken_bwrap_says_what_is_wrong(fake_bwrap, tmp_path):
    r = subprocess.run([sys.executable, "-m", "cluster.train", f"run_dir={tmp_path / 'run'}", "steps=1"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert r.returncode == 1
    assert "cannot start a sandbox here (bwrap: No permissions" in r.stderr
    assert "Traceback" not in r.stderr and "PoolError" not in r.stderr


def test_the_real_bwrap_works_here():
    """`make test` installs bubblewrap; the sandbox tests never skip for want of it."""
    assert bwrap.available() is None
    assert resolve_backend("auto") == "bwrap"


# -- scripts/system-deps.sh, shared by the Makefile and .ci/run -----------------------------------------

def deps_env(tmp_path: Path) -> tuple[dict, Path]:
    """A PATH with no bwrap (nor docker, ...) and a stand-in apt-get that records its arguments."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "apt.log"
    (bindir / "apt-get").write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n")
    (bindir / "apt-get").chmod(0o755)
    for tool in ("id",):
        (bindir / tool).symlink_to(shutil.which(tool))
    tmp_path.chmod(0o755)
    return {"PATH": str(bindir), "HOME": str(tmp_path)}, log


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the script both as root and as another user")
def test_system_deps_installs_as_root(tmp_path):
    env, log = deps_env(tmp_path)
    r = subprocess.run(["/bin/sh", str(DEPS), "run"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    assert calls[0].startswith("update") and calls[1].split() == [
        "install", "-y", "-q", "--no-install-recommends", "bubblewrap"]
    r = subprocess.run(["/bin/sh", str(DEPS), "test"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    wanted = log.read_text().splitlines()[-1].split()
    assert {"bubblewrap", "docker.io", "debootstrap", "runsc", "iproute2", "util-linux"} <= set(wanted)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_system_deps_without_root_prints_the_command_and_stops(tmp_path):
    env, log = deps_env(tmp_path)
    os.chmod(DEPS, 0o755)
    r = subprocess.run([shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/sh", str(DEPS), "run"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "apt-get install -y -q --no-install-recommends bubblewrap" in r.stderr
    assert not log.exists()  # nothing was attempted


def test_system_deps_does_nothing_when_all_is_there(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("bwrap", "unshare", "ip", "dockerd", "debootstrap", "runsc", "chromium-headless-shell"):
        (bindir / tool).write_text("#!/bin/sh\n")
        (bindir / tool).chmod(0o755)
    r = subprocess.run(["/bin/sh", str(DEPS), "test"], env={"PATH": str(bindir)}, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""


def test_make_installs_the_system_pieces_before_anything_runs():
    """`make run` and `make test` go through the same script as .ci/run, before the venv and the job."""
    for target, what in (("run", "run"), ("test", "test")):
        lines = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True,
                               timeout=60).stdout.splitlines()
        first = next(i for i, line in enumerate(lines) if "system-deps.sh" in line)
        assert lines[first].split()[-1] == what
        job = next(i for i, line in enumerate(lines) if "cluster.train" in line or "pytest" in line)
        assert first < job
    assert "make test" in (ROOT / ".ci" / "run").read_text()
