"""Where metrics go: metrics.jsonl in the run directory, wandb (offline by default), the console."""
from __future__ import annotations

import json
import os
from pathlib import Path

from envs.gates import PROPOSAL_GATES


class MetricsLog:
    def __init__(self, run_dir: Path, cfg, resolved_config: dict, start_step: int):
        self.path = run_dir / "metrics.jsonl"
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


def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


class Progress:
    """The console: one line per finished step (step, episode, reward, loss, the funnel in self-play, time),
    with a live bar under it (rich: elapsed and ETA) when `enabled`."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.total, self.bar = total, None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

            self.bar = RichProgress(TextColumn("[bold]step"), MofNCompleteColumn(), BarColumn(),
                                    TimeRemainingColumn())
            self.task = self.bar.add_task("train", total=total, completed=start)
            self.bar.start()

    def update(self, row: dict) -> None:
        line = step_line(row, self.total)
        if self.bar is not None:
            self.bar.console.print(line, highlight=False, markup=False, soft_wrap=True)  # never folded
            self.bar.update(self.task, completed=row["step"] + 1)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def step_line(row: dict, total: int) -> str:
    """'step  3/15  solver     reward 0.125  loss +0.0123  library 10/10 active  12.3 s' (self-play generator
    steps: the funnel instead of the loss details)."""
    width = len(str(total))
    parts = [f"step {row['step'] + 1:>{width}}/{total}", f"{row.get('episode') or row.get('kind', ''):<9}",
             f"reward {_get(row, 'reward/mean'):.3f}", f"loss {_get(row, 'loss'):+.4f}"]
    if "update/skipped" in row and row["update/skipped"]:
        parts[-1] = "no update (no reward spread)"
    if "selfplay/library_size" in row:
        parts.append(_selfplay_info(row))
    if "maturity" in row:
        parts.append(_critic_info(row))
    if "cso/failed_mined" in row:
        if "loss" not in row:
            parts[-1] = "no update (no pair kept)"
        parts.append(f"failed {row['cso/failed_mined']} -> critical {row['cso/candidates']} -> alternatives "
                     f"{row['cso/alternatives']} -> flips {row['cso/flips']} -> pairs {row['cso/pairs_kept']}"
                     f"  prm {'mc' if row.get('cso/prm_mc') else 'model'}  rollouts {row['rollouts/total']}")
    if "verifier/accuracy" in row:
        parts.append(f"verifier accuracy {row['verifier/accuracy']:.2f}  parsed {row['verifier/parsed']:.2f}  "
                     f"prefers A {row['verifier/prefers_a']:.2f}")
    parts.append(f"{row['timing/step']:.1f} s")
    return "  ".join(parts)


def _get(row: dict, key: str) -> float:
    """row[key], or in a row of several roles the first role's <role>/key (0 when absent)."""
    if key in row:
        return row[key]
    return next((v for k, v in row.items() if k.endswith("/" + key) and isinstance(v, (int, float))), 0.0)


def _selfplay_info(row: dict) -> str:
    text = f"library {row['selfplay/active']}/{row['selfplay/library_size']} active"
    if "selfplay/proposals" in row:
        funnel = "/".join(str(row.get(f"selfplay/gate/{g}/passed", 0)) for g in PROPOSAL_GATES)
        text += f"  proposals {row['selfplay/proposals']} -> gates {funnel} -> admitted {row['selfplay/admitted']}"
    return text


def _critic_info(row: dict) -> str:
    """Propose-then-Critic: the critic's accuracy on mixed groups against its baselines, maturity, k."""
    if "critic/accuracy" in row:
        critic = (f"critic {row['critic/accuracy']:.2f} (random {row['critic/random_baseline']:.2f}, "
                  f"majority {row['critic/majority_baseline']:.2f})")
    else:
        critic = "critic - (no mixed group)"
    return f"{critic}  maturity {row['maturity']:.2f}  k {row['proposer/k']}"
