"""Checkpoint layout and resume lookup.

run_dir/checkpoints/step_000010/
    deepspeed/      model + optimizer state of every rank (DeepSpeed's format)
    hf/             the policy in HF format (or a PEFT adapter for LoRA runs)
    policies/<name>/{deepspeed,hf}   the same per policy, in a run with `policies` (instead of the two above)
    episodes/<kind>/ what an episode carries over a resume (e.g. the DPO held-out pairs)
    library/, proposals/             self-play's library and rejection counts
    driver.json     driver state: next step, every policy's version, reward baselines
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

DRIVER_FILE = "driver.json"


class ResumeError(RuntimeError):
    pass


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:06d}"


def write_driver_state(folder: Path, state: dict) -> None:
    tmp = folder / (DRIVER_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.rename(folder / DRIVER_FILE)  # written last: its presence marks a complete checkpoint


def find_checkpoint(path: str) -> Path:
    """A checkpoint folder, or the latest complete one of a run directory."""
    p = Path(path).expanduser()
    if (p / DRIVER_FILE).exists():
        return p
    candidates = sorted(c for c in (p / "checkpoints").glob("step_*") if (c / DRIVER_FILE).exists()) \
        if (p / "checkpoints").is_dir() else []
    if not candidates:
        raise ResumeError(f"resume={path}: no complete checkpoint (a folder with {DRIVER_FILE}) found there")
    return candidates[-1]


def read_driver_state(folder: Path) -> dict:
    return json.loads((folder / DRIVER_FILE).read_text())


def prune(run_dir: Path, keep: int) -> list[Path]:
    """Keep the newest ``keep`` complete checkpoints (keep <= 0: all). A folder without driver.json that is
    older than the newest complete checkpoint is a save that never finished (a crash): it goes too.
    Returns the deleted folders."""
    folders = sorted((run_dir / "checkpoints").glob("step_*"))
    done = [c for c in folders if (c / DRIVER_FILE).exists()]
    old = done[:-keep] if keep > 0 else []
    if done:
        old += [c for c in folders if c not in done and c.name < done[-1].name]
    for folder in old:
        shutil.rmtree(folder, ignore_errors=True)
    return old
