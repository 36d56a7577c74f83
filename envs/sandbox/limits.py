"""Per-task limits and the verdicts a sandboxed task can end with."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Every task ends with exactly one of these.
VERDICTS = ("ok", "error", "timeout", "memory", "crashed", "output_too_large", "forbidden")

# Modules environment code may import. Pure computation only: no files, processes or network.
ALLOWED_IMPORTS = (
    "__future__", "abc", "array", "bisect", "cmath", "collections", "copy", "dataclasses", "decimal",
    "enum", "fractions", "functools", "heapq", "itertools", "json", "math", "numbers", "operator",
    "random", "re", "statistics", "string", "textwrap", "typing", "unicodedata",
)


@dataclass
class Limits:
    wall_s: float = 5.0  # wall-clock time per task
    cpu_s: int = 5  # RLIMIT_CPU
    memory_mb: int = 512  # RLIMIT_AS of the task process
    file_mb: int = 16  # RLIMIT_FSIZE
    nofile: int = 64  # RLIMIT_NOFILE
    nproc: int = 32  # RLIMIT_NPROC, counted for the task's unprivileged uid
    tmp_mb: int = 64  # size of the sandbox's /tmp (tmpfs)
    max_output_kb: int = 1024  # cap on the JSON a task may send back
    extra_imports: list[str] = field(default_factory=list)  # trusted libraries (e.g. reasoning_gym)

    def to_dict(self) -> dict:
        return asdict(self)


def verdict_of_error(error: str | None) -> str:
    """Verdict for an exception text raised by environment code inside a finished task."""
    if not error:
        return "ok"
    if error.startswith("MemoryError"):
        return "memory"
    if error.startswith(("forbidden:", "ForbiddenImport", "PermissionError", "BlockingIOError",
                         "RuntimeError: can't start new thread")):
        return "forbidden"  # refused by the sandbox: the runtime guard, read-only files, signals, the process cap
    return "error"
