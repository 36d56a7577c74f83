"""Sandbox throughput: isolated executions per second and per-call latency, per backend.

For each backend available here (bubblewrap, docker, the non-isolated process pool) and, as the peer,
a fresh `subprocess.run` of Python per call, measure:
  - executions/s: one `score` call of N items spread over the pool's workers (2 workers on 2 cores),
  - median latency of a single-item call, sequentially,
for a trivial environment (score returns 1.0) and a typical seed (knapsack, scoring its reference).

    python bench/sandbox.py [--items 600] [--repeats 3] [--backends bwrap,process,docker]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from envs.registry import resolve_environment  # noqa: E402
from envs.sandbox.limits import Limits  # noqa: E402
from envs.errors import SandboxUnavailable  # noqa: E402
from envs.sandbox.backends import make_pool  # noqa: E402

TRIVIAL = '''class Trivial:
    name = "trivial"
    def sample(self, rng, difficulty):
        return {"x": rng.randrange(10)}
    def prompt(self, inst):
        return "x"
    def reference(self, inst):
        return "x"
    def score(self, inst, response):
        return 1.0
'''


def workloads(pool) -> dict[str, tuple[str, list[dict]]]:
    pool.load("trivial", TRIVIAL)
    name, source = resolve_environment("knapsack")
    pool.load(name, source)
    insts = pool.sample(name, list(range(32)), 3)
    return {"trivial": ("trivial", [{"data": {"x": 1}, "response": "x"}]),
            "knapsack score": (name, [{"data": i["data"], "response": i["reference"]} for i in insts])}


def measure_pool(pool, env_id: str, items: list[dict], n: int, repeats: int) -> tuple[float, float, float]:
    """(isolated executions/s with one item per task, items/s in the default chunks, median latency ms)."""
    batch = (items * (n // len(items) + 1))[:n]
    rates, chunked = [], []
    for _ in range(repeats):
        for per_task, sink in ((1, rates), (None, chunked)):
            start = time.perf_counter()
            results = pool.score(env_id, batch, batch=per_task)
            sink.append(n / (time.perf_counter() - start))
            assert all(r.verdict == "ok" and r.score == 1.0 for r in results), results[:3]
    latencies = []
    for i in range(50):
        start = time.perf_counter()
        pool.score(env_id, [items[i % len(items)]])
        latencies.append(time.perf_counter() - start)
    return statistics.median(rates), statistics.median(chunked), statistics.median(latencies) * 1000


def measure_subprocess(calls: int) -> tuple[float, float]:
    """The peer: a fresh interpreter per call, no isolation (what `subprocess.run` costs)."""
    code = "import json,sys; json.dumps({'score': 1.0})"
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-S", "-c", code], check=True)
        latencies.append(time.perf_counter() - start)
    median = statistics.median(latencies)
    return 1 / median, median * 1000


@contextlib.contextmanager
def docker_daemon(wanted: bool):
    """A private dockerd with the sandbox image (the tests' own helper), when the docker backend is measured."""
    if not wanted or os.environ.get("DOCKER_HOST"):
        yield
        return
    from tests.envs.conftest_docker import build_sandbox_image, private_dockerd

    try:
        with private_dockerd() as (_, base_url):
            os.environ.update(DOCKER_HOST=base_url, EVOFORGE_SANDBOX_IMAGE=build_sandbox_image(base_url))
            yield
    except Exception as e:  # reported in the table as unavailable
        print(f"docker backend unavailable: {e}", file=sys.stderr)
        yield


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", default="bwrap,bwrap-noguard,docker,process")
    args = ap.parse_args()
    with docker_daemon("docker" in args.backends.split(",")):
        run(args)


def guard_off_pool():
    """bubblewrap with the zygote's runtime guard (the audit hook) switched off: the peer that shows its cost."""
    from envs.pool import SubprocessPool
    from envs.sandbox import guard
    from envs.sandbox.bwrap import bwrap_argv

    limits = Limits(wall_s=10)
    argv = bwrap_argv(limits)
    at = argv.index("--chdir")
    argv[at:at] = ["--setenv", guard.SWITCH, "off"]
    return SubprocessPool(2, argv=argv, timeout_s=limits.wall_s + 10.0, env={}, isolated=True,
                          init_requests=[{"op": "limits", "limits": limits.to_dict()}])


def run(args) -> None:
    rows = []
    for backend in args.backends.split(","):
        try:
            pool = guard_off_pool() if backend == "bwrap-noguard" else make_pool(
                backend, 2, Limits(wall_s=10), allow_unisolated=backend == "process")  # benign code only
        except (SandboxUnavailable, Exception) as e:  # a backend this machine lacks is reported, not fatal
            rows.append((backend, "-", "unavailable", "", str(e).splitlines()[0][:60], ""))
            continue
        with pool:
            for label, (env_id, items) in workloads(pool).items():
                rate, chunked, latency = measure_pool(pool, env_id, items, args.items, args.repeats)
                rows.append((backend, label, f"{rate:.0f}", f"{chunked:.0f}", f"{latency:.2f}",
                             "yes" if pool.isolated else "NO"))
    rate, latency = measure_subprocess(30)
    rows.append(("subprocess.run per call", "trivial", f"{rate:.0f}", "-", f"{latency:.2f}", "NO"))
    header = ("backend", "workload", "isolated executions/s (1 item per task)", "items/s (chunked)",
              "median latency ms", "isolated")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    peer = 1000 / latency
    best = max((float(r[2]) for r in rows if r[1] == "trivial" and r[5] == "yes" and r[0] != "bwrap-noguard"),
               default=0.0)  # what training gets: guarded
    print(f"\nisolated trivial executions/s vs a fresh subprocess per call: {best:.0f} vs {peer:.0f} "
          f"({best / peer:.1f}x); goal >= 300/s")


if __name__ == "__main__":
    main()
