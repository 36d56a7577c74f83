"""Hydra multirun sweeps: every point in its own run directory on the embedded cluster, and a summary
(summary.csv and a printed table) of each point's final metrics in the sweep directory."""
import csv
import json
import subprocess
import sys

import pytest
import yaml

from cluster.sweep import main as sweep_main
from tests.conftest import ROOT, evoforge

QUIET = ["logger.progress=false", "logger.wandb.enabled=false"]


def read_csv(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.e2e
def test_two_point_sweep_writes_runs_and_summary(tmp_path):
    sweep = tmp_path / "sweep"
    proc = evoforge("train", "-m", f"hydra.sweep.dir={sweep}", "algorithm.clip_high=0.2,0.28", "steps=2",
                    "save_every=0", *QUIET)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # one after another in the same process, each with its own Ray session and run directory
    for num, clip in enumerate([0.2, 0.28]):
        run = sweep / str(num)
        rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [0, 1]
        assert yaml.safe_load((run / "config.yaml").read_text())["algorithm"]["clip_high"] == clip
        assert f"algorithm.clip_high={clip}" in yaml.safe_load((run / "overrides.yaml").read_text())
        assert (run / "checkpoints" / "step_000002" / "hf").is_dir()

    summary = read_csv(sweep / "summary.csv")
    assert [r["point"] for r in summary] == ["algorithm.clip_high=0.2", "algorithm.clip_high=0.28"]
    assert [r["run_dir"] for r in summary] == [str(sweep / "0"), str(sweep / "1")]
    for row, num in zip(summary, "01"):
        last = json.loads((sweep / num / "metrics.jsonl").read_text().splitlines()[-1])
        assert row["steps"] == "2"
        assert float(row["reward/mean last"]) == pytest.approx(last["reward/mean"])
        assert float(row["reward/mean best"]) >= float(row["reward/mean last"])
        assert float(row["loss"]) == pytest.approx(last["loss"])

    out = proc.stdout
    assert f"sweep summary ({sweep / 'summary.csv'})" in out
    assert "| point | reward/mean last | reward/mean best | loss | steps | run_dir |" in out
    assert f"| algorithm.clip_high=0.28 | {float(summary[1]['reward/mean last']):.4g} |" in out

    # the same summary, rebuilt from the folder alone
    (sweep / "summary.csv").unlink()
    again = subprocess.run([sys.executable, "-m", "cluster.sweep", str(sweep)], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert read_csv(sweep / "summary.csv") == summary


def test_summary_of_run_directories_without_overrides(tmp_path, capsys):
    """Points sent as separate jobs have no overrides.yaml: they are told apart by their configs."""
    config = {"seed": 0, "steps": 3, "run_dir": "", "algorithm": {"clip_high": 0.2, "betas": [0.9, 0.999]}}
    for name, clip, seed, rewards in [("b", 0.28, 1, [0.1, 0.5, 0.3]), ("a", 0.2, 0, [0.2, 0.1])]:
        run = tmp_path / name
        run.mkdir()
        cfg = {**config, "seed": seed, "run_dir": str(run), "algorithm": {**config["algorithm"], "clip_high": clip}}
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
        (run / "metrics.jsonl").write_text("".join(
            json.dumps({"step": i, "reward/mean": r, "loss": -i}) + "\n" for i, r in enumerate(rewards)))
    (tmp_path / "c").mkdir()  # a folder that is no run directory
    (tmp_path / "not-a-run.txt").write_text("")

    assert sweep_main([str(tmp_path)]) == 0
    rows = read_csv(tmp_path / "summary.csv")
    assert [(r["point"], r["steps"], r["reward/mean last"], r["reward/mean best"], r["loss"]) for r in rows] == [
        ("algorithm.clip_high=0.2 seed=0", "2", "0.1", "0.2", "-1"),
        ("algorithm.clip_high=0.28 seed=1", "3", "0.3", "0.5", "-2"),
    ]
    assert "| algorithm.clip_high=0.28 seed=1 | 0.3 | 0.5 | -2 | 3 |" in capsys.readouterr().out
    assert sweep_main([str(tmp_path / "c")]) == 1
    assert sweep_main([]) == 2
