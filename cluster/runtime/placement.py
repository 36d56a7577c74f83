"""Placing roles on the cluster with placement groups (one group per role)."""
from __future__ import annotations

import uuid

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


class PlacementError(RuntimeError):
    pass


def bundle(cpus: float, gpus: float, resource: str | None = None) -> dict[str, float]:
    """One actor's reservation; `resource` adds one unit of a custom node resource (e.g. "sandbox")."""
    b = {"CPU": float(cpus)}
    if gpus:
        b["GPU"] = float(gpus)
    if resource:
        b[resource] = 1.0
    return b


def reserve(role: str, bundles: list[dict], strategy: str, timeout_s: float = 60.0):
    pg = placement_group(bundles, strategy=strategy, name=f"evoforge-{role}-{uuid.uuid4().hex[:8]}")
    ready, _ = ray.wait([pg.ready()], timeout=timeout_s)
    if not ready:
        remove_placement_group(pg)
        raise PlacementError(
            f"could not place role '{role}': it needs {len(bundles)} x {bundles[0]} ({strategy}); "
            f"the cluster has {ray.cluster_resources()}. Lower the role's cpus/gpus or add nodes.")
    return pg


def on_bundle(pg, index: int) -> dict:
    """Actor options that pin an actor to one bundle of a placement group."""
    b = pg.bundle_specs[index]
    return {"num_cpus": b.get("CPU", 0), "num_gpus": b.get("GPU", 0),
            "scheduling_strategy": PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index)}


def release(*pgs) -> None:
    for pg in pgs:
        if pg is not None:
            remove_placement_group(pg)


def compute_share(cfg, part: str) -> int:
    """How many processes of one policy compute at the same time as one of `part` (learner | rollout), for
    threads=0 (auto): a CPU node's cores are split among them. Rollouts and updates take turns unless
    rollouts overlap the update (rollout.max_staleness > 0); then both sides split the cores."""
    ranks, workers = cfg.learner.world_size, cfg.rollout.num_workers
    if rollout_in_learner(cfg):  # one process takes turns between generating and training
        return ranks
    overlap = cfg.rollout.max_staleness > 0
    if part == "learner":
        return ranks + (workers if overlap else 0)
    return workers + (ranks if overlap else 0)


def rollout_in_learner(cfg) -> bool:
    """Whether the policy's rollout engine lives inside learner rank 0 (a HybridWorker) rather than in rollout
    workers of its own. rollout.placement=auto chooses it where it costs nothing: one transformers engine (hf)
    with no GPU of its own, no sleep mode, no broadcast group."""
    rc = cfg.rollout
    if rc.placement != "auto":
        return rc.placement == "learner"
    return (rc.backend == "hf" and rc.num_workers == 1 and rc.gpus_per_worker == 0 and not rc.colocate
            and rc.weight_sync != "broadcast")
