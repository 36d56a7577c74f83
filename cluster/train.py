"""`evoforge train` / `python -m cluster.train`: the Hydra app that runs one training job."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from cluster.config.errors import ConfigError
from cluster.runconfig.checks import validate
from cluster.runconfig.store import register_configs

register_configs()
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def run(cfg, run_dir: Path, resolved: dict) -> dict:
    """Start (or join) the cluster, train, and return the last metrics row."""
    from cluster.driver import Driver
    from cluster.rundir.metrics import read_rows
    from cluster.runtime.session import in_submitted_job, start_ray, stop_ray

    log_dir = run_dir / "logs" if cfg.logger.worker_logs == "file" and not in_submitted_job() else None
    if log_dir is not None:
        print(f"evoforge: worker logs (vLLM, DeepSpeed, executors) in {log_dir}/", flush=True)
    start_ray(cfg.cluster, log_dir)
    try:
        driver = Driver(cfg, run_dir, resolved)
        driver.train()
    finally:
        stop_ray()
    from cluster.reports.summary import format_summary, summarize

    summary = summarize(run_dir)
    if summary["sections"] or summary["roles"] or summary["held_out"]:  # a family's own, roles, held-out; plots
        from cluster.reports.html import write_report

        print(format_summary(summary))
        page = write_report(run_dir)  # writes the plots too
        plots = ", ".join(p.name for p in sorted((run_dir / "plots").glob("*.png")))
        print(f"evoforge: wrote {page} (the whole run on one page) and plots/ ({plots})")
    rows = read_rows(run_dir)
    return rows[-1] if rows else {}


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="config")
def main(dcfg: DictConfig) -> float | None:
    from cluster.rundir.checkpoint import ResumeError, find_checkpoint
    from cluster.runtime.judges import JudgeFailed
    from cluster.runtime.placement import PlacementError
    from envs.errors import UnknownEnvironmentError
    from envs.errors import SandboxUnavailable
    from envs.sandbox.backends import resolve_backend
    from trainers.models import ModelError

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        cfg = OmegaConf.to_object(dcfg)
        validate(cfg)
        if cfg.cluster.address is None:  # embedded: executors run on this machine; refuse before anything starts
            resolve_backend(cfg.env.sandbox.backend, cfg.env.sandbox.allow_unisolated)
        if cfg.resume:  # continue in the run directory that holds the checkpoint
            fresh = run_dir
            run_dir = find_checkpoint(cfg.resume).parent.parent
            if fresh != run_dir and fresh.exists() and not any(fresh.iterdir()):
                shutil.rmtree(fresh)
        elif (run_dir / "metrics.jsonl").exists():
            raise ResumeError(f"run_dir={run_dir} already holds a run; pass resume={run_dir} to continue it "
                              "or choose another run_dir")
        run_dir.mkdir(parents=True, exist_ok=True)
        resolved = OmegaConf.to_container(dcfg, resolve=True)
        resolved["run_dir"] = str(run_dir)  # where it really ran (a sweep point's own directory)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
        print(f"evoforge: run directory {run_dir}", flush=True)
        last = run(cfg, run_dir, resolved)
    except (ConfigError, JudgeFailed, ModelError, PlacementError, ResumeError, SandboxUnavailable,
            UnknownEnvironmentError) as e:
        print(f"evoforge: error: {e}", file=sys.stderr)
        output = Path(HydraConfig.get().runtime.output_dir)
        if output.is_dir() and all(f.name == "train.log" and f.stat().st_size == 0 for f in output.iterdir()):
            shutil.rmtree(output)  # Hydra made it (and its empty log); nothing of a run was written
        sys.exit(1)
    return last.get("reward/mean")


if __name__ == "__main__":
    main()
