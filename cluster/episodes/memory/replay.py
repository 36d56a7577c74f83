"""`evoforge replay RUN [--episode N]`: a memory-agent run's saved episodes, as a person reads them.

    evoforge replay runs/X                  one line per episode: number, step, task, stop reason, reward, turns
    evoforge replay runs/X --episode 12     episode 12's transcript: the task, every turn (what the model wrote,
                                            its call, the tool output), deletions, the answer and the reward
    --kind memory_expert | heldout_before | heldout_after: the expert's episodes, the held-out measurements
RUN is a run folder (its episodes/<kind>.jsonl) or a checkpoint folder (the copy saved with it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KINDS = ("memory_agent", "memory_expert", "heldout_before", "heldout_after")


def find_log(run: Path, kind: str) -> Path:
    kind = f"memory_{kind}" if kind.startswith("heldout_") else kind  # the held-out episodes of that measurement
    for path in (run / "episodes" / f"{kind}.jsonl", run / "episodes" / kind / f"{kind}.jsonl"):
        if path.is_file():
            return path
    raise FileNotFoundError(f"{run}: no saved {kind} episodes (looked for episodes/{kind}.jsonl); replay reads "
                            "memory-agent runs and their checkpoints")


def load_episodes(path: Path) -> list[dict]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not a JSON record ({e.msg})") from None
    return out


def listing(episodes: list[dict]) -> str:
    lines = [f"{'#':>4} {'step':>4}  {'task':<24} {'stop':<13} {'reward':>6} {'turns':>5} {'peak':>6}  answer"]
    for i, e in enumerate(episodes):
        lines.append(f"{i:>4} {_step(e):>4}  {e['task']['id']:<24} {str(e['stop']):<13} {e['reward']:>6.2f} "
                     f"{len(e['turns']):>5} {e['peak_context']:>6}  {(e['answer'] or '')[:40]!r}")
    return "\n".join(lines)


def _step(e: dict) -> str:
    return "-" if e["step"] < 0 else str(e["step"])  # held-out episodes belong to no step


def _indent(text: str, width: int = 4, limit: int = 600) -> str:
    text = text if len(text) <= limit else text[:limit] + f" ... ({len(text) - limit} more characters)"
    return "\n".join(" " * width + line for line in text.splitlines() or [""])


def transcript(e: dict, number: int) -> str:
    task = e["task"]
    out = [f"episode {number} (step {_step(e)}): {task['id']}, {task['kind']}, {task['length']} words",
           f"question: {task['question']}", f"gold answer: {task['answer']}", ""]
    deletions = {d["turn"]: d for d in e.get("deletions", [])}
    for t in e["turns"]:
        flag = "  [error]" if t.get("error") else ""
        out.append(f"--- msg {t['msg']}  ({t['context']} tokens in context, {t['tokens']} written){flag}")
        out.append("  model:")
        out.append(_indent(t["text"]))
        out.append(f"  call: {t['call'] or '(malformed)'}")
        out.append("  tool output:")
        out.append(_indent(t["output"]))
        if t["msg"] in deletions:
            d = deletions[t["msg"]]
            out.append(f"  deleted msg {d['msg']} -> {d['stub']}")
    store = e.get("store", {})
    notes = store.get("notes", {})
    out += ["", f"stop: {e['stop']}   answer: {e['answer']!r}   reward: {e['reward']:.3f}   peak context: "
                f"{e['peak_context']} tokens   malformed calls: {e['malformed']}",
            f"memory: {len(notes)} notes{': ' + ', '.join(notes) if notes else ''}; deleted messages "
            f"{store.get('deleted', [])}"]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="evoforge replay", description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run folder or one of its checkpoint folders")
    ap.add_argument("--episode", type=int, default=None, help="print this episode's transcript (see the listing)")
    ap.add_argument("--kind", default="memory_agent", choices=KINDS)
    args = ap.parse_args(argv)
    try:
        episodes = load_episodes(find_log(args.run, args.kind))
    except (FileNotFoundError, ValueError) as e:
        print(f"evoforge replay: {e}", file=sys.stderr)
        return 2
    if args.episode is None:
        print(listing(episodes))
        return 0
    if not 0 <= args.episode < len(episodes):
        print(f"evoforge replay: --episode {args.episode}: the run has episodes 0..{len(episodes) - 1}",
              file=sys.stderr)
        return 2
    print(transcript(episodes[args.episode], args.episode))
    return 0
