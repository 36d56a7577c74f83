"""Test environment: nothing written to the user's home, Ray on loopback, wandb offline."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import ray_head
from tests.ray_head import shared_head

ROOT = Path(__file__).resolve().parents[1]
_HOME = ROOT / ".cache" / "test-home"
_HOME.mkdir(parents=True, exist_ok=True)
os.environ["HOME"] = str(_HOME)
os.environ.setdefault("EVOFORGE_CACHE", str(_HOME / "evoforge"))
os.environ.setdefault("RAY_TMPDIR", "/tmp/evoforge-ray-tests")
os.environ["WANDB_MODE"] = "offline"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["HF_HUB_OFFLINE"] = "1"
Path(os.environ["RAY_TMPDIR"]).mkdir(parents=True, exist_ok=True)


def evoforge(*args: str, timeout: float = 600, cwd=ROOT, shared_cluster: bool = True) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (the user's path), capturing output. `evoforge train` joins the pytest
    run's shared Ray head (cluster.address) unless the arguments choose a cluster or shared_cluster=False."""
    env = None
    if shared_cluster and args[:1] == ("train",) and not any(
            a.startswith(("cluster=", "cluster.address=")) or a in ("--help", "-h") for a in args[1:]):
        head = shared_head()
        args = (*args, f"cluster.address={head.gcs}")
        env = head.client_env()
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def train_in_process(*args: str) -> subprocess.CompletedProcess:
    """`evoforge train ARGS` as a driver in this process, joined to the shared Ray head: what the CLI
    subprocess does without a new interpreter, imports and Hydra start-up per run. The run's job ends when
    its driver disconnects (Ray releases its actors and placement groups). stdout and stderr come back as
    the subprocess's would; SystemExit becomes the return code."""
    import contextlib
    import io

    import ray

    if ray.is_initialized():
        raise RuntimeError("train_in_process: this process is already a Ray driver (ray_local); use evoforge()")
    head = shared_head()
    argv = ["evoforge-train", *args]
    if not any(a.startswith(("cluster=", "cluster.address=")) for a in args):
        argv.append(f"cluster.address={head.gcs}")
    out, err, code = io.StringIO(), io.StringIO(), 0
    saved_argv, saved_env = sys.argv, dict(os.environ)
    sys.argv = argv
    try:
        from cluster.train import main

        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            finally:
                if ray.is_initialized():  # a run that failed before its own stop_ray
                    ray.shutdown()
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    from cluster.config.schema import ModelConfig
    from trainers.models import prepare_model

    cfg = ModelConfig()
    cfg.cache_dir = os.environ["EVOFORGE_CACHE"]
    return prepare_model(cfg)


@pytest.fixture(scope="module")
def ray_local():
    """This process as a driver of the shared Ray head, one job per test module: the job's actors and
    placement groups go when it disconnects."""
    import ray

    ray.init(address=shared_head().gcs, namespace="evoforge-tests", configure_logging=False,
             log_to_driver=False,  # actors' prints would land between pytest's progress dots (xdist workers)
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def _nothing_left_on_the_shared_head(request):
    """After each end-to-end test: every actor and placement group its runs made is released (those of this
    process's own module job, ray_local's, go when the module ends)."""
    yield
    if request.node.get_closest_marker("e2e") is None or not ray_head.started():
        return
    import ray

    own = ray.get_runtime_context().get_job_id() if ray.is_initialized() else None
    deadline = time.monotonic() + 30  # a finished driver's job is cleaned up by the GCS shortly after it exits
    while True:
        actors, groups = ray_head.live_resources(shared_head(), exclude_job=own)
        if not actors and not groups:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"left on the shared Ray head: {len(actors)} actors "
                        f"({sorted({a.class_name for a in actors})}), {len(groups)} placement groups "
                        f"({sorted(g.name for g in groups)})")
        time.sleep(0.5)


def pytest_sessionfinish(session):
    leftover = ray_head.stop_shared_head()
    if leftover:
        note = f"the shared Ray head left processes running (killed): {leftover}"
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")  # none in an xdist worker
        reporter.write_line(note, red=True) if reporter else print(note, file=sys.stderr)


def pytest_terminal_summary(terminalreporter):
    """One line for the Docker backend's skipped tests, by reason (Docker cannot run here, or not applicable)."""
    from collections import Counter

    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "docker" in getattr(r, "keywords", {})]
    reasons = Counter((r.longrepr[2] if isinstance(r.longrepr, tuple) else str(r.longrepr)).removeprefix("Skipped: ")
                      for r in skipped)
    if reasons:
        terminalreporter.write_line(f"Docker sandbox backend: {len(skipped)} tests skipped: "
                                    + "; ".join(f"{why} ({n})" for why, n in reasons.most_common()), yellow=True)
