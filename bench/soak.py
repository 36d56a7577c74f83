"""Soak: a long tiny self-play run with scripted proposals; does anything grow that should not?

    unshare -n sh -c 'ip link set lo up && exec "$0" "$@"' .venv/bin/python bench/soak.py          # 500 steps
    .venv/bin/python bench/soak.py --steps 60                                                       # shorter

The run is the real CLI (`python -m cluster.train`, embedded Ray, two DeepSpeed ranks, the tiny model)
with `selfplay=evoenv`, one generator step after every solver step, and four scripted proposals per
generator step from tests/cluster/proposals/ (`selfplay.fixed_proposals`, every gate still runs on
them): digit_squares.py (admitted at the first generator step, refused at novelty after that: it passes
L1-L3, so it is loaded on every executor, then unloaded), inconsistent.py (refused at L2 on the executor
that checks it), gameable.py (refused at L3) and broken_syntax.py (refused at L1). With partial credit
per gate passed every generator step has a reward spread, so every generator step runs a learner update
and a weight sync; solver steps score 0 (the tiny model) and skip theirs. `selfplay.retire_above=-1`
retires every environment the solver uses, down to `selfplay.min_active`. Two executors, so candidates
are checked on both.

While it runs, the soak reads /proc for the driver and every process under it at three points: `start`
(after WARMUP steps: imports, first admission and retirements done), `middle` (steps/2) and `end`
(while the last step runs): resident memory, open file descriptors and process counts per kind (driver,
EnvExecutor actors, sandbox zygotes and their bubblewrap wrappers, task children in flight, other Ray
processes). From metrics.jsonl: `env/loaded` (environments an executor holds) against `selfplay/active`
at every step. After the run: proposal files and checkpoints against the retention set
(`selfplay.keep_proposals`, `keep_checkpoints`), the rejection counts against the funnel in the metrics,
and that no process of the run outlived it.

It exits 1 if anything leaks: RSS of a kind growing from middle to end by more than
max(--rss-pct % of its middle value, --rss-mb MiB), open fds growing by more than --fd-slack, a
long-lived process count changing, `env/loaded` ever differing from `selfplay/active`, more files kept
than the retention set, or a process left behind. Writes bench/out/soak.md (the table) and soak.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PROPOSALS = ROOT / "tests" / "cluster" / "proposals"
WARMUP = 10  # steps before the "start" snapshot
KINDS = ("driver", "executor", "zygote", "bwrap", "task", "ray_actor", "ray_other")
LONG_LIVED = ("driver", "executor", "zygote", "bwrap", "ray_actor")  # counts must not change
CHECKED = ("driver", "executor", "zygote")  # RSS and fds must not grow
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- the run ------------------------------------------------------------------------------------
def overrides(args, run_dir: Path) -> list[str]:
    files = [PROPOSALS / f for f in ("digit_squares.py", "inconsistent.py", "gameable.py", "broken_syntax.py")]
    return [f"run_dir={run_dir}", f"steps={args.steps}", "seed=0", "logger.progress=false",
            "logger.wandb.enabled=false", f"save_every={args.save_every}", f"keep_checkpoints={args.keep_checkpoints}",
            # the fastest honest step: 2 prompts x 2 samples x 4 new tokens from the tiny model
            "algorithm.prompts_per_step=2", "rollout.sampling.n=2", "rollout.sampling.max_new_tokens=4",
            "env.num_executors=2", "env.workers_per_executor=1", "env.cpus_per_executor=0.5",
            "selfplay=evoenv", f"selfplay.fixed_proposals=[{','.join(str(f) for f in files)}]",
            "selfplay.review=fixed_yes", "selfplay.band=[0.0,0.9]", "selfplay.generator_every=1",
            "selfplay.proposals=2", "selfplay.samples_per_proposal=2", "selfplay.retire_above=-1",
            "selfplay.partial_credit=0.05",  # generator rewards differ: generator steps update and sync
            "selfplay.difficulties=[1]", "selfplay.calibration_instances=2", "selfplay.calibration_rollouts=1",
            "selfplay.gate_seeds=2", "selfplay.gate_difficulties=[1,2]", "selfplay.examples=1",
            "selfplay.example_chars=100",  # short generator prompts: the learner's sequences stay short
            f"selfplay.keep_proposals={args.keep_proposals}"]


def child_env(tmp: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false",
               HOME=str(OUT / "home"), RAY_TMPDIR=str(tmp / "ray"), PYTHONPATH=str(ROOT))
    env.setdefault("EVOFORGE_CACHE", str(OUT / "cache"))
    for d in (env["HOME"], env["RAY_TMPDIR"], env["EVOFORGE_CACHE"]):
        Path(d).mkdir(parents=True, exist_ok=True)
    return env


# -- /proc ----------------------------------------------------------------------------------------
def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def proc_table() -> dict[int, dict]:
    """pid -> {ppid, start (clock ticks since boot), cmd, comm, rss (bytes), fds (None: unreadable)}."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read(f"/proc/{entry}/stat")
        if stat is None:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":
            continue
        cmd = (_read(f"/proc/{entry}/cmdline") or "").replace("\0", " ").strip()
        statm = _read(f"/proc/{entry}/statm")
        try:
            fds = len(os.listdir(f"/proc/{entry}/fd"))
        except OSError:
            fds = None
        out[int(entry)] = {"ppid": int(fields[1]), "start": int(fields[19]), "cmd": cmd, "comm": comm,
                           "rss": int(statm.split()[1]) * PAGE if statm else 0, "fds": fds}
    return out


def kind_of(pid: int, root: int, table: dict) -> str:
    p = table[pid]
    if pid == root:
        return "driver"
    if p["cmd"].startswith("ray::EnvExecutor"):
        return "executor"
    if p["comm"] == "bwrap":  # its argv names the zygote too
        return "bwrap"
    if "envs.sandbox.zygote" in p["cmd"]:  # a zygote, or a task it forked (a zygote's child)
        parent = table.get(p["ppid"], {})
        return "task" if parent.get("comm") != "bwrap" and "envs.sandbox.zygote" in parent.get("cmd", "") \
            else "zygote"
    if p["cmd"].startswith("ray::"):
        return "ray_actor"
    return "ray_other"


def snapshot(root: int) -> dict:
    table = proc_table()
    children: dict[int, list[int]] = {}
    for pid, p in table.items():
        children.setdefault(p["ppid"], []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            tree.append(pid)
            todo += children.get(pid, [])
    kinds = {k: {"n": 0, "rss_mb": 0.0, "fds": 0, "fds_unreadable": 0, "each": []} for k in KINDS}
    for pid in sorted(tree):
        k, p = kinds[kind_of(pid, root, table)], table[pid]
        k["n"] += 1
        k["rss_mb"] += p["rss"] / 2**20
        k["each"].append(round(p["rss"] / 2**20, 1))
        if p["fds"] is None:
            k["fds_unreadable"] += 1
        else:
            k["fds"] += p["fds"]
    return {"time": time.time(), "kinds": kinds, "pids": {pid: table[pid]["start"] for pid in tree}}


def still_alive(pids: dict[int, int]) -> list[int]:
    """Of these (pid, start time) processes, the ones still running (a reused pid has another start)."""
    table = proc_table()
    return [pid for pid, start in pids.items() if pid in table and table[pid]["start"] == start]


# -- the soak -------------------------------------------------------------------------------------
def rows_of(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line being written
    return out


def du(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    return len(files), sum(p.stat().st_size for p in files)


def soak(args) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="soak-", dir=args.tmp))
    run_dir = tmp / "run"
    cmd = [sys.executable, "-m", "cluster.train", *overrides(args, run_dir)]
    points = {"start": min(WARMUP, args.steps - 1), "middle": args.steps // 2, "end": args.steps - 1}
    log = OUT / "soak.log"
    print(f"soak: {args.steps} steps, run_dir {run_dir}, log {log}", flush=True)
    t0 = time.perf_counter()
    snaps: dict[str, dict] = {}
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(tmp), stdout=f, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                done = len(rows_of(run_dir / "metrics.jsonl"))  # steps finished; step `done` is running
                for name, step in points.items():
                    if name not in snaps and done >= step:
                        snaps[name] = {**snapshot(proc.pid), "step": done}
                        k = snaps[name]["kinds"]
                        print(f"soak: {name:<6} step {done:>4}  {time.perf_counter() - t0:7.0f} s  "
                              + "  ".join(f"{n} {k[n]['rss_mb']:.0f} MiB" for n in CHECKED), flush=True)
                time.sleep(0.5)
        except KeyboardInterrupt:
            proc.terminate()
            raise
    wall = time.perf_counter() - t0
    time.sleep(args.exit_grace)
    last = snaps.get("end") or snaps.get("middle") or {"pids": {}}
    survivors = still_alive({p: s for p, s in last["pids"].items() if p != proc.pid})
    rows = rows_of(run_dir / "metrics.jsonl")
    result = {"steps": args.steps, "returncode": proc.returncode, "wall_s": wall, "snapshots": snaps,
              "survivors": survivors, "command": " ".join(sys.argv), "run_dir": str(run_dir)}
    result.update(check(args, run_dir, rows, snaps, survivors, proc.returncode))
    text = table(args, result, rows)
    print(text)
    (OUT / "soak.md").write_text(text + "\n")
    (OUT / "soak.json").write_text(json.dumps({k: v for k, v in result.items()}, indent=1, default=str))
    return 1 if result["problems"] else 0


def check(args, run_dir: Path, rows: list[dict], snaps: dict, survivors: list[int], rc: int) -> dict:
    problems = []
    if rc != 0:
        problems.append(f"the run failed (exit code {rc}); see bench/out/soak.log")
    if len(rows) != args.steps:
        problems.append(f"{len(rows)} metrics rows for {args.steps} steps")
    if set(snaps) != {"start", "middle", "end"}:
        problems.append(f"snapshots taken: {sorted(snaps)} (the run ended before the others)")
    loaded = [(r["step"], r.get("env/loaded"), r.get("selfplay/active")) for r in rows]
    off = [x for x in loaded if x[1] is None or x[1] != x[2]]
    if off:
        problems.append(f"env/loaded != selfplay/active at {len(off)} steps, first: step {off[0][0]} "
                        f"loaded {off[0][1]} active {off[0][2]}")
    if "middle" in snaps and "end" in snaps:
        mid, end = snaps["middle"]["kinds"], snaps["end"]["kinds"]
        for k in CHECKED:
            grew = end[k]["rss_mb"] - mid[k]["rss_mb"]
            allowed = max(args.rss_pct / 100 * mid[k]["rss_mb"], args.rss_mb)
            if grew > allowed:
                problems.append(f"{k} RSS grew {grew:.1f} MiB from middle to end (allowed {allowed:.1f})")
            if end[k]["fds"] - mid[k]["fds"] > args.fd_slack:
                problems.append(f"{k} open fds {mid[k]['fds']} -> {end[k]['fds']} (slack {args.fd_slack})")
        for k in LONG_LIVED:
            if end[k]["n"] != mid[k]["n"]:
                problems.append(f"{k} processes {mid[k]['n']} -> {end[k]['n']}")
        if end["task"]["n"] > end["zygote"]["n"]:
            problems.append(f"{end['task']['n']} sandbox task processes for {end['zygote']['n']} zygotes")
    if survivors:
        problems.append(f"{len(survivors)} processes of the run still alive {args.exit_grace:g} s after it "
                        f"exited: {survivors[:8]}")
    generator_steps = sum(r.get("episode") == "generator" for r in rows)
    files = sorted((run_dir / "proposals").glob("step_*.jsonl"))
    want = min(generator_steps, args.keep_proposals) if args.keep_proposals > 0 else generator_steps
    if len(files) != want:
        problems.append(f"{len(files)} proposal files kept, expected {want}")
    counted = json.loads((run_dir / "proposals" / "rejections.json").read_text()) \
        if (run_dir / "proposals" / "rejections.json").is_file() else {}
    proposed = int(sum(r.get("selfplay/proposals", 0) for r in rows))
    if counted.get("proposals") != proposed:
        problems.append(f"rejections.json counts {counted.get('proposals')} proposals, the metrics {proposed}")
    ckpts = sorted((run_dir / "checkpoints").glob("step_*")) if (run_dir / "checkpoints").is_dir() else []
    if len(ckpts) > args.keep_checkpoints or any(not (c / "driver.json").exists() for c in ckpts):
        problems.append(f"checkpoints kept: {[c.name for c in ckpts]} (retention {args.keep_checkpoints})")
    return {"problems": problems, "generator_steps": generator_steps, "proposal_files": len(files),
            "proposal_bytes": sum(f.stat().st_size for f in files), "proposals_counted": counted.get("proposals"),
            "proposals_in_metrics": proposed, "checkpoints": [c.name for c in ckpts],
            "checkpoint_bytes": du(run_dir / "checkpoints")[1],
            "checkpoints_written": len(set(range(args.save_every, args.steps + 1, max(args.save_every, 1))
                                           if args.save_every > 0 else ()) | {args.steps}), "loaded": loaded}


def table(args, r: dict, rows: list[dict]) -> str:
    snaps = r["snapshots"]
    names = [n for n in ("start", "middle", "end") if n in snaps]
    steps = " / ".join(f"{n} {snaps[n]['step']}" for n in names)
    gen = [x["timing/step"] for x in rows if x.get("episode") == "generator"]
    sol = [x["timing/step"] for x in rows if x.get("episode") != "generator"]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    lines = [f"steps {r['steps']} ({r['generator_steps']} generator), wall {r['wall_s']:.0f} s "
             f"({r['wall_s'] / max(r['steps'], 1):.2f} s/step; mean timing/step solver {mean(sol):.2f} s, "
             f"generator {mean(gen):.2f} s); snapshots after steps: {steps}", "",
             "| process kind | count | RSS MiB (" + " / ".join(names) + ") | open fds (" + " / ".join(names) + ") |",
             "|---|---|---|---|"]
    for k in KINDS:
        counts = " / ".join(str(snaps[n]["kinds"][k]["n"]) for n in names)
        rss = " / ".join(f"{snaps[n]['kinds'][k]['rss_mb']:.0f}" for n in names)
        fds = " / ".join(str(snaps[n]["kinds"][k]["fds"]) + ("?" if snaps[n]["kinds"][k]["fds_unreadable"] else "")
                         for n in names)
        lines.append(f"| {k} | {counts} | {rss} | {fds} |")
    for k in ("executor", "zygote"):  # one by one (in pid order)
        each = [snaps[n]["kinds"][k]["each"] for n in names]
        per = [" / ".join(f"{e[i]:.0f}" if i < len(e) else "-" for e in each) for i in range(max(map(len, each)))]
        lines.append(f"\n{k} RSS MiB one by one (" + " / ".join(names) + "): " + "; ".join(per))
    loaded = [x[1] for x in r["loaded"]]
    active = [x[2] for x in r["loaded"]]
    at = {n: snaps[n]["step"] for n in names}
    pick = lambda xs, n: xs[min(at[n], len(xs) - 1)] if xs else None  # noqa: E731
    lines += ["", "loaded environments per executor (env/loaded; " + " / ".join(names) + "): "
              + " / ".join(str(pick(loaded, n)) for n in names) + f", max {max(filter(None, loaded), default=None)}; "
              f"active library: " + " / ".join(str(pick(active, n)) for n in names)
              + f"; steps where they differ: {sum(a != b for a, b in zip(loaded, active))}",
              f"proposal files: {r['proposal_files']} kept of {r['generator_steps']} written "
              f"(selfplay.keep_proposals={args.keep_proposals}), {r['proposal_bytes'] / 1024:.0f} KiB; "
              f"rejections.json counts {r['proposals_counted']} proposals, the metrics {r['proposals_in_metrics']}",
              f"checkpoints: {len(r['checkpoints'])} kept of {r['checkpoints_written']} written "
              f"(keep_checkpoints={args.keep_checkpoints}): {', '.join(r['checkpoints'])}, "
              f"{r['checkpoint_bytes'] / 2**20:.1f} MiB",
              f"processes left {args.exit_grace:g} s after the run: {len(r['survivors'])}",
              f"tolerance: RSS per kind (driver, executor, zygote) may grow middle -> end by max({args.rss_pct:g} %, "
              f"{args.rss_mb:g} MiB); open fds by {args.fd_slack}; long-lived process counts not at all",
              "", "PASS" if not r["problems"] else "FAIL\n" + "\n".join(f"  - {p}" for p in r["problems"])]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--keep-checkpoints", type=int, default=2)
    ap.add_argument("--keep-proposals", type=int, default=20)
    ap.add_argument("--rss-pct", type=float, default=5.0, help="allowed RSS growth middle -> end, percent")
    ap.add_argument("--rss-mb", type=float, default=16.0, help="allowed RSS growth middle -> end, MiB (at least)")
    ap.add_argument("--fd-slack", type=int, default=4)
    ap.add_argument("--exit-grace", type=float, default=10.0, help="seconds after exit before looking for survivors")
    ap.add_argument("--tmp", default=None, help="where the run directory goes (default: the system temp dir)")
    args = ap.parse_args()
    if args.steps < 4:
        ap.error("--steps must be at least 4")
    print(f"soak: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {platform.platform()}")
    return soak(args)


if __name__ == "__main__":
    sys.exit(main())
