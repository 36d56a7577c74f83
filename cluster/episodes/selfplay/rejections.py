"""Why proposals were rejected, kept whole while old proposal files are pruned: run_dir/proposals/ holds one
`step_NNNNNN.jsonl` per generator step (every proposal with its gate reports) and `rejections.json`, the run's
counts of first-failed-gate reasons (selfplay.keep_proposals bounds the step files, never the counts)."""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

PROPOSALS_DIR = "proposals"  # run_dir/proposals/step_NNNNNN.jsonl: every proposal of one generator step
REJECTIONS_FILE = "rejections.json"  # in PROPOSALS_DIR: the run's rejection counts (see new_rejections)
MAX_REASONS = 50  # distinct reasons counted per gate; rarer ones merge into OTHER_REASONS
OTHER_REASONS = "(other reasons)"


def rejection_reasons(run_dir, top: int = 3) -> dict[str, list[tuple[str, int]]]:
    """Per gate, the most common reasons proposals failed it, over the whole run (read_rejections)."""
    counts = read_rejections(Path(run_dir) / PROPOSALS_DIR)["counts"]
    return {g: sorted(c.items(), key=lambda kv: -kv[1])[:top] for g, c in counts.items()}


def new_rejections() -> dict:
    """Empty counts: {"format", "through_step" (the last step counted, -1: none), "proposals" (counted),
    "counts": {gate: {reason: proposals whose first failed gate and (blurred) reason these are}}}."""
    return {"format": 1, "through_step": -1, "proposals": 0, "counts": {}}


def count_rejections(counts: dict, records, step: int) -> dict:
    """Add one step's proposal records (dicts with "gates") to ``counts``; returns it."""
    for record in records:
        counts["proposals"] += 1
        failed = next((g for g in record.get("gates") or [] if not g.get("passed")), None)
        if failed:
            per_gate = counts["counts"].setdefault(str(failed.get("gate")), {})
            reason = generic_reason(str(failed.get("reason", "")))
            per_gate[reason] = per_gate.get(reason, 0) + 1
            if len(per_gate) > MAX_REASONS:  # bounded: the rarest reason (not OTHER) merges into OTHER
                rarest = min((r for r in per_gate if r != OTHER_REASONS), key=per_gate.get)
                per_gate[OTHER_REASONS] = per_gate.get(OTHER_REASONS, 0) + per_gate.pop(rarest)
    counts["through_step"] = max(counts["through_step"], int(step))
    return counts


def proposal_files(folder) -> list[Path]:
    """The step files in ``folder``, oldest step first."""
    folder = Path(folder)
    return sorted(folder.glob("step_*.jsonl"), key=file_step) if folder.is_dir() else []


def file_step(path: Path) -> int:
    try:
        return int(Path(path).stem.split("_", 1)[1])
    except (IndexError, ValueError):
        return -1


def read_rejections(folder, before: int | None = None) -> dict:
    """The counts in ``folder`` (a run's proposals/ or a checkpoint's): its REJECTIONS_FILE plus the step
    files newer than that counted; only steps below ``before`` when given (the file is ignored if it
    counted further)."""
    folder = Path(folder)
    counts = new_rejections()
    try:
        saved = json.loads((folder / REJECTIONS_FILE).read_text())
        if isinstance(saved, dict) and isinstance(saved.get("counts"), dict) and \
                (before is None or saved.get("through_step", -1) < before):
            counts.update(saved)
    except (OSError, ValueError):
        pass  # none (an older run, or no generator step yet) or unreadable: count the files
    for path in proposal_files(folder):
        step = file_step(path)
        if step <= counts["through_step"] or (before is not None and step >= before):
            continue
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        count_rejections(counts, [r for r in records if isinstance(r, dict)], step)
    return counts


def write_rejections(folder, counts: dict) -> None:
    """``counts`` to folder/REJECTIONS_FILE, atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{REJECTIONS_FILE}.", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(counts, f, indent=1, sort_keys=True)
        os.replace(tmp, folder / REJECTIONS_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def prune_proposals(folder, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` step files (keep <= 0: keep all); returns the deleted ones."""
    old = proposal_files(folder)[:-keep] if keep > 0 else []
    for path in old:
        path.unlink(missing_ok=True)
    return old


def generic_reason(reason: str) -> str:
    """A reason with its specifics (line numbers, quoted names, numbers) blurred, so alike reasons group."""
    reason = re.sub(r"line \d+", "line N", reason)
    reason = re.sub(r"'[^']*'", "'...'", reason)
    return re.sub(r"\d+(\.\d+)?", "N", reason)[:100]
