"""Starting or joining the Ray cluster."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import ray

from actors.worker_logs import LOG_DIR_ENV
from cluster.runtime.reaper import MARKER

# Actors inherit these: CPU DeepSpeed, quiet tokenizers, no wandb network.
WORKER_ENV = {"TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}

# One watchdog and one cluster id per driver process (a forked child gets its own).
_reaper: subprocess.Popen | None = None
_cluster_id: str | None = None
_owner_pid: int | None = None


def project_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _watch_embedded_cluster() -> str:
    """The id that marks this driver's embedded cluster, with a cluster.runtime.reaper watching the driver.

    Ray binds gcs_server, raylet and the log monitor to the driver (PR_SET_PDEATHSIG), but not what the
    raylet starts: after a SIGKILL the dashboard and runtime-env agents, workers and their children outlive
    the driver (a minute and more). The reaper, in a session of its own, kills whatever carries the id once
    the driver has exited, however it exited."""
    global _reaper, _cluster_id, _owner_pid
    if _owner_pid != os.getpid():
        _cluster_id, _reaper, _owner_pid = uuid.uuid4().hex, None, os.getpid()
    if _reaper is None or _reaper.poll() is not None:
        env = {k: v for k, v in os.environ.items() if k != MARKER}  # the reaper itself carries no marker
        _reaper = subprocess.Popen([sys.executable, "-E", "-s", "-m", "cluster.runtime.reaper", str(os.getpid()), _cluster_id],
                                   cwd=project_root(), env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return _cluster_id


@contextmanager
def _stderr_to(path: Path | None):
    """Ray's C++ start-up notes (e.g. that a node without a default route falls back to its hostname) go to
    `path`; if starting fails, they are printed after all."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as f:
        os.dup2(f.fileno(), 2)
    try:
        yield
    except BaseException:
        os.dup2(saved, 2)
        sys.stderr.write(path.read_text(errors="replace")[-4000:])
        raise
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def start_ray(cfg, log_dir: Path | None = None) -> None:
    """Embedded single-node cluster on loopback, or join `cfg.address` (the `ray job submit` case).
    With `log_dir` every worker's output goes to log_dir/worker-<pid>.log and Ray's
    start-up notes to log_dir/ray.log, not to the console."""
    if ray.is_initialized():
        return
    env = dict(WORKER_ENV)
    if cfg.address is None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [project_root(), os.environ.get("PYTHONPATH")]))
        # Every process the cluster starts inherits the marker (workers through the raylet); SPT_NOENV keeps
        # setproctitle ("ray::IDLE", "ray::DashboardAgent") from overwriting it in /proc/PID/environ.
        marks = {MARKER: _watch_embedded_cluster(), "SPT_NOENV": "1"}
        saved = {k: os.environ.get(k) for k in marks}
        os.environ.update(marks)
        runtime_env = _worker_runtime_env(env, log_dir)
        try:
            with _stderr_to(None if log_dir is None else Path(log_dir) / "ray.log"):
                ray.init(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, include_dashboard=False,
                         _node_ip_address=cfg.node_ip, namespace=cfg.namespace,
                         runtime_env=runtime_env, log_to_driver=log_dir is None, configure_logging=False)
        finally:  # the driver's own later subprocesses are not the cluster's
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    else:
        # Inside `ray job submit` the job's runtime_env (working_dir) already applies and `log_dir` is None.
        # A driver started by hand (or a test) that joins a running cluster sends its workers' output to
        # `log_dir` as an embedded cluster's do. Nothing of a cluster this driver joins carries its marker, so
        # nothing of it is ever reaped.
        runtime_env = _worker_runtime_env(env, log_dir) if log_dir is not None else None
        with _stderr_to(None if log_dir is None else Path(log_dir) / "ray.log"):
            ray.init(address=cfg.address, namespace=cfg.namespace, runtime_env=runtime_env,
                     log_to_driver=log_dir is None, configure_logging=log_dir is None)


def _worker_runtime_env(env: dict, log_dir: Path | None) -> dict:
    """The job's runtime env: `env` for every worker and, with `log_dir`, their output to files there."""
    runtime_env = {"env_vars": env}
    if log_dir is not None:
        env[LOG_DIR_ENV] = str(Path(log_dir).resolve())
        runtime_env["worker_process_setup_hook"] = "actors.worker_logs.to_file"
        # token auth stays on (Ray's default); its note that it is on is not news on every start
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    return runtime_env


def in_submitted_job() -> bool:
    """Whether this driver is the entrypoint of a `ray job submit` (its output is the job's log)."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


def stop_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()
