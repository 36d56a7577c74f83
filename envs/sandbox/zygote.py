"""The sandbox worker: ``python -m envs.sandbox.zygote`` (inside bubblewrap or a container).

Speaks the JSON-lines protocol of ``envs.worker`` on stdin/stdout, but never
runs environment code itself: it keeps each environment's *source* and, for
every request, forks a child that drops to an unprivileged uid, applies
rlimits, loads the source and answers. The zygote enforces the wall-clock
limit and the output cap, kills whatever the task left running, and stamps
each response with a verdict (see limits.VERDICTS) and the limit that tripped.

Stdlib only: the zygote runs in a minimal image too.
"""
from __future__ import annotations

import builtins
import importlib
import json
import os
import resource
import select
import signal
import time

from envs.sandbox import guard
from envs.sandbox.limits import ALLOWED_IMPORTS, Limits, verdict_of_error
from envs.protocol import compile_source
from envs.worker import handle

NOBODY = 65534
MB = 1 << 20


def _drop_privileges(limits: Limits) -> None:
    os.setsid()  # own process group: the whole task tree can be killed at once
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    for res, value in ((resource.RLIMIT_AS, limits.memory_mb * MB), (resource.RLIMIT_CPU, limits.cpu_s),
                       (resource.RLIMIT_FSIZE, limits.file_mb * MB), (resource.RLIMIT_NOFILE, limits.nofile),
                       (resource.RLIMIT_NPROC, limits.nproc), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (value, value))


def _run_child(req: dict, sources: dict, limits: Limits, out_fd: int) -> None:
    """In the forked child: drop privileges, guard the task, load the environment, answer, exit.

    The child keeps only /dev/null on fds 0-2 and its result pipe (never the zygote's protocol pipes,
    which environment code could otherwise write forged responses to). The runtime guard
    (envs/sandbox/guard.py, an audit hook) is installed before any environment code runs; its scratch
    directory is $TMPDIR or /tmp (the sandbox's tmpfs).
    """
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, out_fd)
        os.closerange(out_fd + 1, max(out_fd + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
        _drop_privileges(limits)
        if os.environ.get(guard.SWITCH) != "off":
            guard.install(out_fd, ALLOWED_IMPORTS, os.environ.get("TMPDIR") or "/tmp", limits.extra_imports)
        else:  # set by the launcher, only to test the OS isolation on its own (tests/envs/test_sandbox.py)
            builtins.__import__ = guard._import_wrapper(frozenset(ALLOWED_IMPORTS) | frozenset(limits.extra_imports),
                                                        builtins.__import__)  # no hook: it raises ForbiddenImport
        cache: dict = {}
        if req["op"] in ("sample", "score", "load"):
            env_id = req["env_id"]
            source = req["source"] if req["op"] == "load" else sources.get(env_id)
            if source is None:
                raise KeyError(f"environment {env_id!r} is not loaded")
            if req["op"] != "load":
                handle({"op": "load", "env_id": env_id, "source": source}, cache)
        resp = handle(req, cache)
        data = json.dumps(resp, allow_nan=False).encode()
    except BaseException as e:  # noqa: BLE001 - report anything, never let the child return
        data = json.dumps({"id": req.get("id"), "ok": False, "result": None,
                           "error": f"{type(e).__name__}: {e}"}).encode()
    try:  # length-prefixed, so the zygote need not wait for EOF (orphans may hold the pipe open)
        view = memoryview(len(data).to_bytes(8, "big") + data)
        while view:
            view = view[os.write(out_fd, view):]
    finally:
        os._exit(0)


def _read_capped(fd: int, deadline: float, cap: int) -> tuple[bytes, str | None]:
    """Read the child's length-prefixed answer; stop at EOF, the deadline or the cap."""
    buf = bytearray()
    need = 8
    while len(buf) < need:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"", "timeout"
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, min(65536, need - len(buf)))
        if not chunk:
            return b"", None  # died without a complete answer
        buf += chunk
        if need == 8 and len(buf) == 8:
            need = 8 + int.from_bytes(buf, "big")
            if need - 8 > cap:
                return b"", "output_too_large"
    return bytes(buf[8:]), None


def _kill_leftovers(pid: int) -> None:
    """Kill the task's process group, then anything else the unprivileged uid still runs (setsid'd orphans)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if os.getuid() != 0 or os.environ.get("EVOFORGE_OWN_PID_NAMESPACE") != "1":
        return  # kill(-1) is only safe where the task's uid owns nothing but the task (own PID namespace)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if not _uid_processes(NOBODY):
            return
        reaper = os.fork()
        if reaper == 0:  # as the task's uid, kill(-1) reaches exactly the task's processes
            try:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(reaper, 0)


def _uid_processes(uid: int) -> list[int]:
    """Live (non-zombie) processes of `uid` visible here."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid and _state(entry) != "Z":
                    found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


def _state(pid: str) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0].decode()


def run_task(req: dict, sources: dict, limits: Limits) -> dict:
    read_fd, write_fd = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _run_child(req, sources, limits, write_fd)
    os.close(write_fd)
    try:
        data, tripped = _read_capped(read_fd, start + limits.wall_s, limits.max_output_kb * 1024)
    finally:
        os.close(read_fd)
    if tripped:
        os.kill(pid, signal.SIGKILL)
    status = _wait(pid, start + limits.wall_s)
    _kill_leftovers(pid)
    return _verdict(req, data, tripped, status, limits, time.monotonic() - start)


def _wait(pid: int, deadline: float) -> int:
    """The child's exit status; a child still running after it answered (or past the deadline) is killed."""
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.0005)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def _verdict(req: dict, data: bytes, tripped: str | None, status: int, limits: Limits, seconds: float) -> dict:
    base = {"id": req.get("id"), "ok": False, "result": None, "seconds": round(seconds, 6)}
    if tripped == "timeout":
        return {**base, "verdict": "timeout", "limit": f"wall_s={limits.wall_s}",
                "error": f"task exceeded the wall-clock limit of {limits.wall_s} s"}
    if tripped == "output_too_large":
        return {**base, "verdict": "output_too_large", "limit": f"max_output_kb={limits.max_output_kb}",
                "error": f"task output exceeded {limits.max_output_kb} KiB"}
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL) and not data:
        return {**base, "verdict": "timeout", "limit": f"cpu_s={limits.cpu_s}",
                "error": f"task exceeded the CPU-time limit of {limits.cpu_s} s"}
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == guard.EXIT_FORBIDDEN:
        try:  # the guard's own answer names the event; an answer the task forged before it was refused does not
            first = json.loads(data)
        except ValueError:
            first = None
        error = first.get("error") if isinstance(first, dict) else None
        if not (isinstance(error, str) and error.startswith(guard.FORBIDDEN_PREFIX)):
            error = "forbidden: the runtime guard ended the task after it had written an answer"
        return {**base, "verdict": "forbidden", "limit": "sandbox policy", "error": error}
    try:
        resp = json.loads(data) if data else None
    except ValueError:
        resp = None
    if not isinstance(resp, dict):
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit code {os.WEXITSTATUS(status)}"
        return {**base, "verdict": "crashed", "limit": None, "error": f"task died without an answer ({how})"}
    resp.update(id=req.get("id"), seconds=base["seconds"])
    if not resp.get("ok"):
        resp["verdict"] = verdict_of_error(resp.get("error")) if resp.get("error") else "error"
    elif req.get("op") == "score":
        resp["verdicts"] = [verdict_of_error(e) for e in resp.get("errors") or []]
        resp["verdict"] = "ok"
    else:
        resp["verdict"] = "ok"
    item_verdicts = resp.get("verdicts") or [resp["verdict"]]
    resp["limit"] = {"memory": f"memory_mb={limits.memory_mb}", "forbidden": "sandbox policy"}.get(
        next((v for v in item_verdicts if v != "ok"), "ok"))
    return resp


def serve(proto_in, proto_out) -> None:
    sources: dict[str, str] = {}
    limits = Limits()
    for line in proto_in:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            op = req["op"]
        except (ValueError, KeyError, TypeError) as e:
            resp = {"id": None, "ok": False, "result": None, "error": f"bad request: {e}", "verdict": "error"}
        else:
            if op == "ping":
                resp = {"id": req.get("id"), "ok": True, "result": "pong", "error": None, "verdict": "ok"}
            elif op == "limits":  # set per-pool limits; trusted extra imports are imported here, once
                limits = Limits(**req["limits"])
                for name in limits.extra_imports:
                    importlib.import_module(name)
                resp = {"id": req.get("id"), "ok": True, "result": limits.to_dict(), "error": None, "verdict": "ok"}
            elif op == "unload":  # tasks fork per request, so the source is all the zygote holds of an env
                gone = sources.pop(str(req.get("env_id")), None) is not None
                resp = {"id": req.get("id"), "ok": True, "result": {"unloaded": gone, "loaded": len(sources)},
                        "error": None, "verdict": "ok"}
            else:
                resp = run_task(req, sources, limits)
                if op == "load" and resp.get("ok"):
                    sources[req["env_id"]] = req["source"]
                    compile_source(req["source"], f"<env:{req['env_id']}>")  # tasks fork with the code ready
        proto_out.write(json.dumps(resp) + "\n")
        proto_out.flush()


def main() -> None:
    for name in ALLOWED_IMPORTS:  # imported before any fork: tasks never need to read module files
        importlib.import_module(name)
    proto_in = os.fdopen(os.dup(0), "r", encoding="utf-8", errors="replace")
    proto_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    serve(proto_in, proto_out)


if __name__ == "__main__":
    main()
