"""Starting or joining the Ray cluster."""
from __future__ import annotations

import os

import ray

# Actors inherit these: CPU DeepSpeed, quiet tokenizers, no wandb network.
WORKER_ENV = {"TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def project_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_ray(cfg) -> None:
    """Embedded single-node cluster on loopback, or join `cfg.address` (the `ray job submit` case)."""
    if ray.is_initialized():
        return
    env = dict(WORKER_ENV)
    if cfg.address is None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [project_root(), os.environ.get("PYTHONPATH")]))
        ray.init(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, include_dashboard=False,
                 _node_ip_address=cfg.node_ip, namespace=cfg.namespace,
                 runtime_env={"env_vars": env}, log_to_driver=True, configure_logging=False)
    else:
        # Inside `ray job submit` the job's runtime_env (working_dir) already applies.
        ray.init(address=cfg.address, namespace=cfg.namespace, log_to_driver=True)


def stop_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()
