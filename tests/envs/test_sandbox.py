"""The hostile battery against every isolating backend on this machine, and the plain-process backend
with benign code only. Hostile code bypasses the import guard on purpose (random._os, __import__ with
forged globals), and the runtime guard (envs/sandbox/guard.py) is off here (the zygote's launcher sets
EVOFORGE_RUNTIME_GUARD=off): the OS isolation must hold on its own. tests/envs/test_hostile.py runs
hostile code with the guard on."""
import os
import socket
import subprocess
import sys
import time

import pytest

from envs.registry import resolve_environment
from envs.pool import SubprocessPool
from envs.sandbox.limits import Limits
from envs.sandbox.backends import make_pool
from envs.sandbox import bwrap, guard
from tests.envs.conftest_docker import docker_daemon, sandbox_image  # noqa: F401 - fixtures

# bubblewrap never skips: `make test` installs it, and without it make_pool fails naming what is missing
BACKENDS = ["bwrap", pytest.param("docker", marks=pytest.mark.docker)]
LIMITS = Limits(wall_s=2.0, cpu_s=1, memory_mb=256, nproc=16, tmp_mb=8, max_output_kb=64)


def unguarded_pool(backend: str, size: int, limits: Limits):
    """make_pool(backend, size, limits), with the zygote's runtime guard off (guard.SWITCH)."""
    init, backstop = [{"op": "limits", "limits": limits.to_dict()}], limits.wall_s + 10.0
    if backend == "docker":
        from envs.sandbox.docker_backend import make_docker_pool
        return make_docker_pool(size, limits, backstop, init,
                                environment={"EVOFORGE_OWN_PID_NAMESPACE": "1", guard.SWITCH: "off"})
    argv = bwrap.bwrap_argv(limits)
    at = len(argv) - 1 - argv[::-1].index(sys.executable)  # the zygote's command line starts here
    argv[at:at] = ["--setenv", guard.SWITCH, "off"]
    return SubprocessPool(size, argv=argv, timeout_s=backstop, env={}, init_requests=init, isolated=True)


def hostile(score_body: str, top: str = "", header: str = "import random\nos = random._os") -> str:
    """An environment whose score() runs ``score_body`` (and whose module runs ``header`` and ``top``)."""
    body = "\n".join("        " + line for line in score_body.strip().splitlines())
    return f'''{header}
{top}
class Hostile:
    name = "hostile"
    def sample(self, rng, d):
        return {{"n": rng.randrange(10)}}
    def prompt(self, inst):
        return "p"
    def reference(self, inst):
        return "r"
    def score(self, inst, response):
{body}
        return 1.0
'''


def nobody_processes(settle_s: float = 2.0) -> set[int]:
    """Live processes of the sandbox uid on the whole machine (zombies being reaped do not count)."""
    deadline = time.monotonic() + settle_s
    while True:
        pids = set()
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == 65534:
                    with open(f"/proc/{entry}/stat", "rb") as f:
                        if f.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                            pids.add(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


@pytest.fixture(scope="module", params=BACKENDS)
def pool(request):
    saved = dict(os.environ)
    if request.param == "docker":  # a private dockerd and the locally built image (skips where impossible)
        _, base_url = request.getfixturevalue("docker_daemon")
        os.environ.update(DOCKER_HOST=base_url, EVOFORGE_SANDBOX_IMAGE=request.getfixturevalue("sandbox_image"))
    p = unguarded_pool(request.param, 2, LIMITS)
    p.backend = request.param
    yield p
    p.close()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def listener():
    """A listener the test runs on loopback: sandboxed code must not reach it."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.5)
    yield srv
    srv.close()


def score_once(pool, env_id, source):
    pool.load(env_id, source)
    return pool.score(env_id, [{"data": {"n": 1}, "response": "x"}])[0]


CASES = {  # name: (score body, expected verdict, words in the error)
    "fork_bomb": ("while True:\n    os.fork()", "forbidden", "BlockingIOError"),
    "memory_bomb": ("x = bytearray(10 ** 10)", "memory", "MemoryError"),
    "infinite_loop": ("while True:\n    pass", "timeout", "CPU-time"),
    "sleep_past_timeout": ("r, w = os.pipe()\nos.read(r, 1)", "timeout", "wall-clock"),
    "write_outside_scratch": ("open('/opt/evoforge/envs/pwned', 'w').write('x')", "forbidden", "Permission"),
    "write_big_file": ("open('/tmp/big', 'wb').write(b'x' * (64 << 20))", "error", ""),
    "read_shadow": ("open('/etc/shadow').read()", "error", "No such file"),
    "read_home": ("open(os.path.expanduser('~root/.bashrc')).read()", "", ""),
    "signal_parent": ("os.kill(os.getppid(), 9)", "forbidden", "not permitted"),
    "signal_init": ("os.kill(1, 9)", "forbidden", "not permitted"),
    "segfault": ("os.kill(os.getpid(), 11)", "crashed", "signal 11"),
    "ctypes_segfault": ("__import__('ctypes', {'__name__': 'x'}).string_at(0)", "crashed", "signal 11"),
    "exit_midway": ("os._exit(3)", "crashed", "exit code 3"),
    "forbidden_import": ("import subprocess", "forbidden", "subprocess"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_is_contained(pool, case):
    body, verdict, words = CASES[case]
    if pool.backend == "docker":
        # the container is the boundary: its zygote already runs as uid 65534, so a task that signals it
        # ends the container (reported as crashed, replaced); verdicts are checked, not error texts
        r = score_once(pool, case, hostile(body))
        if case == "signal_init":  # the zygote is PID 1 of the container: SIGKILL from inside is ignored
            assert r.verdict == "ok"
        else:
            assert r.score == 0.0 and r.verdict != "ok", r
        return
    before = nobody_processes()
    r = score_once(pool, case, hostile(body))
    assert r.score == 0.0, r
    if verdict:
        assert r.verdict == verdict, r
    else:
        assert r.verdict != "ok", r
    assert words in (r.error or ""), r
    assert nobody_processes() <= before, "the task left processes running"
    assert not os.path.exists("/opt/evoforge/envs/pwned")


def test_huge_output_is_capped(pool):
    source = hostile("pass").replace('return {"n": rng.randrange(10)}', 'return {"n": "x" * (1 << 20)}')
    pool.load("huge", source)
    with pytest.raises(Exception, match="output_too_large"):
        pool.sample("huge", [1], 1)


def test_network_is_unreachable(pool, listener):
    port = listener.getsockname()[1]
    body = f"s = __import__('socket', {{'__name__': 'x'}})\ns.create_connection(('127.0.0.1', {port}), timeout=1)"
    r = score_once(pool, "net", hostile(body))
    assert r.verdict != "ok" and r.score == 0.0
    with pytest.raises(socket.timeout):
        listener.accept()  # nothing ever connected


def test_network_namespace_is_empty(listener):
    """Even the sandbox's own trusted interpreter has no route to the host's loopback."""
    port = listener.getsockname()[1]
    argv = bwrap.bwrap_argv(LIMITS)[:-4] + [argv_python(), "-c",
                                            f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1)"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and ("unreachable" in proc.stderr or "refused" in proc.stderr)
    with pytest.raises(socket.timeout):
        listener.accept()


def argv_python() -> str:
    return bwrap.bwrap_argv(LIMITS)[-4]


def test_orphans_and_setsid_children_are_killed(pool):
    if pool.backend == "docker":
        pytest.skip("container processes are the sandbox uid on the host too; tested on bwrap")
    before = nobody_processes()
    body = "pid = os.fork()\nif pid == 0:\n    os.setsid()\n    r, w = os.pipe()\n    os.read(r, 1)"
    r = score_once(pool, "orphan", hostile(body))
    assert r.verdict == "ok"  # the task itself finished; its orphan must still be gone
    assert nobody_processes() <= before


def test_import_time_side_effects_stay_inside(pool):
    with pytest.raises(Exception, match="timeout"):
        pool.load("import_loop", hostile("pass", top="while True:\n    pass"))
    with pytest.raises(Exception, match="Permission|Read-only"):
        pool.load("import_write", hostile("pass", top="open('/opt/evoforge/envs/x', 'w')"))


def test_tampering_does_not_leak_between_tasks(pool):
    # the task patches json and builtins to forge its answer; the forgery is not a valid answer, and the
    # next task (a fresh fork of the zygote) sees the real modules again
    body = ("import json\nimport builtins\n"
            "json.dumps = lambda *a, **k: '{\"ok\": true, \"result\": [1.0], \"errors\": [null]}' + 'x'\n"
            "builtins.float = lambda *a: 1.0\nreturn 'not a number'")
    r = score_once(pool, "tamper", hostile(body).replace("import builtins\n", "builtins = random._os.sys.modules['builtins']\n"))
    assert r.score == 0.0 and r.verdict != "ok"
    name, source = resolve_environment("repeat_digits")
    pool.load(name, source)
    ok = pool.score(name, [{"data": {"digit": 3, "length": 4}, "response": "3333"},
                           {"data": {"digit": 3, "length": 4}, "response": "x"}])
    assert [x.score for x in ok] == [1.0, 0.0] and all(x.verdict == "ok" for x in ok)


def test_pool_serves_correct_results_after_the_battery(pool):
    for case in ("fork_bomb", "memory_bomb", "segfault"):
        score_once(pool, case, hostile(CASES[case][0]))
    name, source = resolve_environment("knapsack")
    pool.load(name, source)
    insts = pool.sample(name, list(range(6)), 2)
    scores = pool.score(name, [{"data": i["data"], "response": i["reference"]} for i in insts])
    assert [s.score for s in scores] == [1.0] * 6


def test_process_backend_runs_benign_code_and_says_it_is_not_isolated():
    with pytest.warns(UserWarning, match="NOT isolated"):
        p = make_pool("process", 1, LIMITS, allow_unisolated=True)
    with p:
        assert p.isolated is False
        name, source = resolve_environment("subset_sum")
        p.load(name, source)
        inst = p.sample(name, [4], 2)[0]
        assert p.score(name, [{"data": inst["data"], "response": inst["reference"]}])[0].score == 1.0
