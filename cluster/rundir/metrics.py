"""Where metrics go: metrics.jsonl in the run directory (one JSON row per step) and wandb (offline by default)."""
from __future__ import annotations

import json
import os
from pathlib import Path


METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    def __init__(self, run_dir: Path, cfg, resolved_config: dict, start_step: int):
        self.path = run_dir / METRICS_FILE
        if start_step > 0 and self.path.exists():  # resuming: drop rows past the checkpoint
            rows = [ln for ln in self.path.read_text().splitlines() if ln.strip()]
            keep = [ln for ln in rows if json.loads(ln)["step"] < start_step]
            self.path.write_text("".join(ln + "\n" for ln in keep))
        self.wandb = None
        wc = cfg.logger.wandb
        if wc.enabled and wc.mode != "disabled":
            os.environ.setdefault("WANDB_SILENT", "true")
            import wandb

            self.wandb = wandb.init(project=wc.project, entity=wc.entity, mode=wc.mode, dir=str(run_dir),
                                    config=resolved_config, id=run_dir.name.replace(":", "-"), resume="allow")

    def write(self, row: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def read_rows(run_dir) -> list[dict]:
    """The rows of run_dir/metrics.jsonl, one per step (empty when there is none): the one reader of the file."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
