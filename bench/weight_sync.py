"""Weight sync: the object-store transport against the broadcast group, on equal work.

For each model: a real learner group (DeepSpeed ZeRO-2, one rank) and a rollout pool of two workers
(transformers backend) on an embedded Ray cluster; each transport syncs the learner's full weights into
both workers --repeats times (one warm-up first, which for broadcast includes building the group).
Prints median seconds per sync and the ratio broadcast / object_store.

    unshare -n sh -c 'ip link set lo up && exec "$0" "$@"' .venv/bin/python bench/weight_sync.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ray  # noqa: E402

from cluster.config.schema import AlgorithmConfig, LearnerConfig, ModelConfig, RolloutConfig  # noqa: E402
from cluster.runtime.learner_group import LearnerGroup  # noqa: E402
from cluster.runtime.rollout_pool import RolloutPool  # noqa: E402
from trainers.models import prepare_model  # noqa: E402


def measure(model: str, transport: str, repeats: int) -> tuple[float, int]:
    mcfg = ModelConfig(name=model)
    if os.environ.get("EVOFORGE_CACHE"):
        mcfg.cache_dir = os.environ["EVOFORGE_CACHE"]
    path = prepare_model(mcfg)
    cfg = SimpleNamespace(model=mcfg, learner=LearnerConfig(world_size=1, cpus_per_rank=0.5),
                          algorithm=AlgorithmConfig(prompts_per_step=2),
                          rollout=RolloutConfig(num_workers=2, cpus_per_worker=0.5, threads=1, weight_sync=transport))
    pool = RolloutPool(cfg, path, "PACK")
    learners = LearnerGroup(cfg, path, "PACK")
    times, nbytes = [], 0
    for version in range(1, repeats + 2):
        start = time.perf_counter()
        nbytes = pool.sync(learners, version)["bytes"]
        if version > 1:
            times.append(time.perf_counter() - start)
    for actor in pool.workers + learners.ranks:
        ray.kill(actor)
    for pg in (pool.pg, learners.pg):
        ray.util.remove_placement_group(pg)
    return statistics.median(times), nbytes


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", default="tiny,smollm2")
    args = ap.parse_args()
    ray.init(num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1", configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}})
    rows = []
    try:
        for model in args.models.split(","):
            store, nbytes = measure(model, "object_store", args.repeats)
            bcast, _ = measure(model, "broadcast", args.repeats)
            rows.append((model, nbytes, store, bcast))
    finally:
        ray.shutdown()
    print(f"\nweight sync into 2 rollout workers, median of {args.repeats} syncs")
    print("| model | MB | object_store s | broadcast s (gloo) | broadcast/object_store |\n|---|---:|---:|---:|---:|")
    for model, nbytes, store, bcast in rows:
        print(f"| {model} | {nbytes / 1e6:.1f} | {store:.3f} | {bcast:.3f} | {bcast / store:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
