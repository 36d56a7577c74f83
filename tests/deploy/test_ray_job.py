"""`ray job submit` of a training run to a real Ray head on loopback, with token authentication, and the
README's cluster command, which must be the canonical one of docker/k8s/ENTRYPOINT."""
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.ray_head import MARKER, VENV_BIN, ray_head, reap

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = (ROOT / "docker" / "k8s" / "ENTRYPOINT").read_text().strip()
QUIET = ["logger.progress=false", "logger.wandb.enabled=false"]


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    assert f"\n## {title}\n" in text, f"README.md has no section '## {title}'"
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_submits_the_canonical_training_command():
    section = readme_section("Run on a cluster")
    submits = [ln.strip() for ln in section.splitlines() if ln.strip().startswith("ray job submit ")]
    assert submits, "the section shows no `ray job submit` command"
    options, command = submits[0].split(" -- ", 1)
    assert command == ENTRYPOINT
    assert "--address http://" in options and "--working-dir ." in options


@pytest.mark.e2e
def test_ray_job_submit_trains_on_an_existing_cluster(tmp_path):
    missing = [m for m in ("aiohttp_cors", "opencensus", "smart_open") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"the Ray job server needs ray[default] (missing {missing}): pip install 'ray[default]==2.60.0'")
    tmp = Path(tempfile.mkdtemp(prefix="evoforge-job-"))  # short: Ray's socket paths must fit in 107 bytes
    token, marker = secrets.token_hex(32), f"{MARKER}={secrets.token_hex(8)}"
    client = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    client.pop("RAY_ADDRESS", None)
    run = tmp_path / "run"
    try:
        # the job gets EVOFORGE_CACHE from its runtime env
        with ray_head(tmp, token, marker.split("=", 1)[1], extra_env={"EVOFORGE_CACHE": None}) as head:
            address = head.dashboard
            anonymous = {k: v for k, v in client.items() if not k.startswith("RAY_AUTH")}
            refused = subprocess.run([str(VENV_BIN / "ray"), "job", "list", "--address", address], env=anonymous,
                                     cwd=tmp, capture_output=True, text=True, timeout=60)
            assert refused.returncode != 0 and "authentication token" in refused.stdout + refused.stderr

            runtime_env = {"env_vars": {"EVOFORGE_CACHE": os.environ["EVOFORGE_CACHE"]}}
            submit = [str(VENV_BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(ROOT),
                      "--runtime-env-json", json.dumps(runtime_env), "--",
                      "python", "-m", "cluster.train", "cluster=existing", "steps=2", "save_every=2", *QUIET,
                      f"run_dir={run}"]
            for _ in range(60):  # the head's job agent registers a little after its dashboard answers
                job = subprocess.run(submit, env=client, cwd=tmp, capture_output=True, text=True, timeout=600)
                output = job.stdout + job.stderr
                if job.returncode == 0 or "No available agent to submit job" not in output:
                    break
                time.sleep(1)
            assert job.returncode == 0, output[-4000:]
            assert "succeeded" in output and f"evoforge: run directory {run}" in output
        leftover = reap(marker)
        assert not leftover, f"processes of the Ray head still running: {leftover}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1]
    assert yaml.safe_load((run / "config.yaml").read_text())["cluster"]["address"] == "auto"
    checkpoint = run / "checkpoints" / "step_000002"
    assert (checkpoint / "driver.json").exists() and (checkpoint / "hf" / "config.json").exists()
