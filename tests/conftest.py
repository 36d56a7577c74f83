"""Test environment: nothing written to the user's home, Ray on loopback, wandb offline."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def evoforge(*args: str, timeout: float = 600, cwd=ROOT) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (the user's path), capturing output."""
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    from cluster.config import ModelConfig
    from trainers.models import prepare_model

    cfg = ModelConfig()
    cfg.cache_dir = os.environ["EVOFORGE_CACHE"]
    return prepare_model(cfg)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1", namespace="evoforge-tests",
             configure_logging=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield ray
    ray.shutdown()


def pytest_terminal_summary(terminalreporter):
    """One line for the Docker backend's skipped tests, by reason (Docker cannot run here, or not applicable)."""
    from collections import Counter

    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "docker" in getattr(r, "keywords", {})]
    reasons = Counter((r.longrepr[2] if isinstance(r.longrepr, tuple) else str(r.longrepr)).removeprefix("Skipped: ")
                      for r in skipped)
    if reasons:
        terminalreporter.write_line(f"Docker sandbox backend: {len(skipped)} tests skipped: "
                                    + "; ".join(f"{why} ({n})" for why, n in reasons.most_common()), yellow=True)
