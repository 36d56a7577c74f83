"""Ray's worker_process_setup_hook for an embedded cluster: each worker process (rollout engines, learner
ranks, executors and their sandboxes) writes its stdout and stderr to RUN_DIR/logs/worker-<pid>.log
instead of the driver's console, which keeps one line per step."""
from __future__ import annotations

import os
import sys

LOG_DIR_ENV = "EVOFORGE_WORKER_LOG_DIR"


def to_file() -> None:
    folder = os.environ.get(LOG_DIR_ENV)
    if not folder:
        return
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, f"worker-{os.getpid()}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
