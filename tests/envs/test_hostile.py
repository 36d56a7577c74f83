"""Hostile environment code against the runtime guard (envs/sandbox/guard.py), on bubblewrap and Docker.

Each case is one evasion route to one forbidden operation: module attributes (dataclasses.sys,
typing.sys, enum.bltns, random._os), getattr chains with computed names, modules already in
sys.modules, builtins reached through other modules, strings evaluated by trusted code, writing
outside the sandbox, reading a secret, processes, threads, sockets, ctypes, and tampering with the
guard itself. For each: the static L1 check (envs.gates.static_problems) refuses it where it can see
it, and with the static check bypassed (the pool called directly) the runtime guard ends the task as
"forbidden" with the audit event's name in the error; nothing is written outside the sandbox, the
host's secret is never read, and no process is left behind.
"""
import dis
import importlib
import os
import secrets
import sys
import types
from pathlib import Path

import pytest

from envs.gates import static_problems
from envs.registry import resolve_environment
from envs.sandbox.limits import Limits
from envs.sandbox import guard
from envs.sandbox.backends import make_pool
from envs.sandbox.limits import ALLOWED_IMPORTS
from tests.envs.conftest_docker import docker_daemon, sandbox_image  # noqa: F401 - fixtures
from tests.envs.test_sandbox import hostile as sandbox_hostile, nobody_processes

# bubblewrap never skips: `make test` installs it, and without it make_pool fails naming what is missing
BACKENDS = ["bwrap", pytest.param("docker", marks=pytest.mark.docker)]
LIMITS = Limits(wall_s=5.0, cpu_s=4, memory_mb=512, nproc=16, tmp_mb=8, max_output_kb=64)
ENVS_DIR = Path(guard.ENVS_DIR)  # read-only at /opt/evoforge/envs inside both sandboxes
TOKEN = "evoforge-secret-" + secrets.token_hex(8)
SECRET_VAR = "EVOFORGE_TEST_SECRET"
# The host's secret file: in the venv's root, which bubblewrap binds read-only into the sandbox (the
# interpreter lives there) and leaves world-readable, so only the guard stands between it and the task.
SECRET_FILE = Path(sys.prefix) / f"evoforge-test-secret-{os.getpid()}.txt"

IMPORTS = "import collections, dataclasses, enum, functools, json, operator, random, string, typing"


def hostile(body: str, top: str = "") -> str:
    """An environment whose score() runs ``body`` (and whose module runs ``top`` when it loads)."""
    return sandbox_hostile(body, top, header=IMPORTS)


OS = "dataclasses.sys.modules['os']"
# _posixsubprocess through a trusted importer (pkgutil): the import passes, the kernel refuses the fork
FORK_EXEC = (f"os = {OS}\nr, w = os.pipe()\nimport_module = typing.sys.modules['importlib'].import_module\n"
             "import_module('pkgutil').resolve_name('_posixsubprocess').fork_exec(\n"
             "    ['/bin/true'], [b'/bin/true'], True, (w,), None, None, -1, -1, -1, -1, -1, -1, r, w,\n"
             "    True, False, 0, None, None, None, -1, None, False)")

# name: (score body, refused by the static check?, words in the error: the audit event for the guard)
CASES = {
    # processes, whatever the route to os / subprocess
    "system_via_dataclasses_sys": (f"{OS}.system('touch /tmp/ran')", True, "audit event 'os.system'"),
    "subprocess_via_importlib_in_sys_modules": (
        "typing.sys.modules['importlib'].import_module('subprocess').run(['true'])", True,
        "audit event 'subprocess.Popen'"),
    "fork_via_private_module_attribute": ("random._os.fork()", True, "audit event 'os.fork'"),
    "posix_spawn_via_computed_getattr": (
        "getattr(dataclasses, 'sy' + 's').modules['posix'].posix_spawn('/bin/true', ['true'], {})", True,
        "audit event 'os.posix_spawn'"),
    "exec_via_getattr_chain": (
        "functools.reduce(getattr, ['sys', 'modules'], typing)['os'].execv('/bin/true', ['true'])", True,
        "audit event 'os.exec'"),
    "kill_via_enum_bltns": ("enum.bltns.__import__('os', {'__name__': 'x'}).kill(1, 9)", True,
                            "audit event 'os.kill'"),
    "pty_via_attrgetter": (
        "operator.attrgetter('sys.modules')(typing)['importlib'].import_module('pty').spawn('/bin/true')",
        True, "audit event 'pty.spawn'"),
    "native_module_via_importlib": ("typing.sys.modules['importlib'].import_module('_ctypes')", True,
                                    "audit event 'import': '_ctypes' imported by environment code"),
    "fork_exec_with_no_audit_event": (FORK_EXEC, True, "BlockingIOError"),  # RLIMIT_NPROC 0: the kernel says no
    "native_code_from_scratch": (
        "m = typing.sys.modules\nutil = m['importlib'].import_module('importlib.util')\n"
        "dataclasses.builtins.open('/tmp/evil.so', 'wb').write(b'\\x7fELF')\n"
        "spec = util.spec_from_file_location('evil', '/tmp/evil.so')\nutil.module_from_spec(spec)", True,
        "native code from '/tmp/evil.so'"),

    "thread_with_no_audit_event": ("typing.sys.modules['_thread'].start_new_thread(print, ())", True,
                                   "can't start new thread"),
    "import_statement": ("import subprocess", True, "audit event 'import': 'subprocess'"),
    "import_of_loaded_module_hidden_in_try": ("try:\n    import os\nexcept ImportError:\n    pass", True,
                                              "audit event 'import': 'os'"),
    "import_with_forged_globals": ("enum.bltns.__import__('socket', {'__name__': 'x'})", True,
                                   "audit event 'import': 'socket'"),
    # network and native code
    "socket_via_importlib": (
        "typing.sys.modules['importlib'].import_module('socket').create_connection(('127.0.0.1', 9), 1)",
        True, "audit event 'socket."),
    "ctypes_via_importlib": (
        "typing.sys.modules['importlib'].import_module('ctypes').string_at(0)", True, "audit event 'ctypes."),
    # writing outside the scratch directory
    "write_project_dir_via_builtins_module": (
        "dataclasses.builtins.open('/opt/evoforge/envs/pwned', 'w').write('x')", True, "audit event 'open'"),
    "write_via_relative_traversal": (
        "json.decoder.__builtins__['open']('../../../../opt/evoforge/envs/pwned', 'w')", True,
        "writing '/opt/evoforge/envs/pwned'"),
    "mkdir_outside": (f"{OS}.mkdir('/opt/evoforge/envs/pwned_dir')", True, "audit event 'os.mkdir'"),
    "rename_out_of_scratch": (
        f"os = {OS}\nopen = dataclasses.builtins.open\nopen('/tmp/a', 'w').write('x')\n"
        "os.rename('/tmp/a', '/opt/evoforge/envs/pwned')", True, "audit event 'os.rename'"),
    "write_relative_to_a_directory_descriptor": (
        f"os = {OS}\nd = os.open('/tmp', os.O_RDONLY)\n"
        "os.open('pwned', os.O_WRONLY | os.O_CREAT, dir_fd=d)", True, "relative to a directory descriptor"),
    "symlink_in_scratch": (f"{OS}.symlink('/etc', '/tmp/etc')", True, "audit event 'os.symlink'"),
    "str_subclass_path": (
        "class P(str):\n    def __eq__(s, o):\n        return True\n    __hash__ = str.__hash__\n"
        "    def startswith(s, *a):\n        return True\n"
        "dataclasses.builtins.open(P('/opt/evoforge/envs/pwned'), 'w')", True, "audit event 'open'"),
    # reading what the task has no business reading
    "read_passwd_via_formatter_strings": (
        "string.Formatter().get_field('0.__self__.open', (len,), {})[0]('/etc/passwd').read()", False,
        "reading '/etc/passwd'"),
    "read_proc_environ": ("dataclasses.builtins.open('/proc/self/environ').read()", True, "audit event 'open'"),
    "read_through_proc_root_symlink": ("dataclasses.builtins.open('/proc/self/root/etc/passwd').read()", True,
                                       "reading '/etc/passwd'"),
    "read_host_secret_file": (f"raise ValueError(dataclasses.builtins.open({str(SECRET_FILE)!r}).read())", True,
                              "audit event 'open'"),
    "list_root": (f"raise ValueError({OS}.listdir('/'))", True, "audit event 'os.listdir'"),
    # code execution and the guard itself
    "exec_string": ("dataclasses.builtins.exec('x = 1')", True, "audit event 'compile'"),
    "string_evaluated_by_typing": (
        "class C:\n    x: \"dataclasses.sys.modules['os'].system('true')\"\ntyping.get_type_hints(C)", False,
        "audit event 'os.system'"),
    "frames_from_a_traceback": ("try:\n    1 / 0\nexcept Exception as e:\n    e.__traceback__.tb_frame.f_back",
                                True, "audit event 'object.__getattr__'"),
    "getframe": ("typing.sys._getframe(1)", True, "audit event 'sys._getframe'"),
    "gc_walk": ("typing.sys.modules['importlib'].import_module('gc').get_referrers(typing)", True, "audit event 'gc.get_referrers'"),
    "settrace": ("typing.sys.settrace(lambda *a: None)", True, "audit event 'sys.settrace'"),
    "new_audit_hook": ("typing.sys.addaudithook(lambda *a: None)", True, "audit event 'sys.addaudithook'"),
    "read_code_object": ("(lambda: 0).__code__.replace(co_code=b'')", True, "audit event 'object.__getattr__'"),
    "marshal_bytecode": ("dataclasses.sys.modules['marshal'].loads(b'\\xe3')", True, "audit event 'marshal.loads'"),
    "tamper_with_guard_then_system": (
        "m = dataclasses.sys.modules\ng = m['envs.sandbox.guard']\n"
        "g.REFUSED_EVENTS, g.REFUSED_PREFIXES, g.UNTRUSTED_EVENTS = frozenset(), (), frozenset()\n"
        "b = m['builtins']\nb.type = lambda x: str\nb.repr = lambda x: \"'/usr/\"\nb.ascii = lambda x: ''\n"
        "m['os']._exit = lambda c: None\nm['os'].write = lambda fd, d: len(d)\nm['os'].readlink = lambda p: p\n"
        "m['os'].system('true')", True, "audit event 'os.system'"),
    "caught_and_hidden": (f"try:\n    {OS}.system('true')\nexcept BaseException:\n    pass", True,
                          "audit event 'os.system'"),
}


@pytest.fixture(scope="module", params=BACKENDS)
def pool(request):
    saved = dict(os.environ)
    os.environ[SECRET_VAR] = TOKEN  # on the host: must never reach the sandbox
    try:
        SECRET_FILE.write_text(TOKEN)
        SECRET_FILE.chmod(0o644)
    except OSError as e:
        pytest.skip(f"cannot put the test secret next to the interpreter ({e})")
    if request.param == "docker":  # a private dockerd and the locally built image (skips where impossible)
        _, base_url = request.getfixturevalue("docker_daemon")
        os.environ.update(DOCKER_HOST=base_url, EVOFORGE_SANDBOX_IMAGE=request.getfixturevalue("sandbox_image"))
    try:
        p = make_pool(request.param, 2, LIMITS)
        p.backend = request.param
        yield p
        p.close()
    finally:
        SECRET_FILE.unlink(missing_ok=True)
        os.environ.clear()
        os.environ.update(saved)


def score_once(pool, env_id, source):
    pool.load(env_id, source)
    return pool.score(env_id, [{"data": {"n": 1}, "response": "x"}])[0]


def assert_host_untouched() -> None:
    assert not [p.name for p in ENVS_DIR.glob("pwned*")], "written outside the sandbox"
    assert SECRET_FILE.read_text() == TOKEN


@pytest.mark.parametrize("case", list(CASES))
def test_static_check(case):
    body, static, _ = CASES[case]
    problems = static_problems(hostile(body))
    assert bool(problems) == static, problems


@pytest.mark.parametrize("case", list(CASES))
def test_runtime_guard_refuses(pool, case):
    body, _, words = CASES[case]
    before = nobody_processes() if pool.backend == "bwrap" else set()
    r = score_once(pool, case, hostile(body))
    assert TOKEN not in (r.error or "")
    if case == "read_host_secret_file" and pool.backend == "docker" and SECRET_FILE.is_relative_to("/tmp"):
        # a checkout under /tmp: the secret's path lies in the container's own /tmp (its scratch), where
        # the host's file does not exist at all
        assert (r.score, r.verdict) == (0.0, "error") and "FileNotFoundError" in r.error, r
    else:
        assert (r.score, r.verdict) == (0.0, "forbidden"), r
        assert words in r.error, r.error
    assert_host_untouched()
    if pool.backend == "bwrap":
        assert nobody_processes() <= before, "the task left processes running"


def test_refused_at_load_time(pool):
    """Module-level code is guarded too: loading fails in every worker, with the event in the reason."""
    with pytest.raises(Exception, match=r"\[forbidden\] forbidden: audit event 'os.system'"):
        pool.load("load_time", hostile("pass", top=f"{OS}.system('true')"))
    with pytest.raises(Exception, match=r"audit event 'open': writing"):
        pool.load("load_time_write", hostile("pass", top="json.decoder.__builtins__['open']('/opt/x', 'w')"))
    assert_host_untouched()


def test_a_plain_pool_loads_no_third_party_package(pool):
    """Without trusted extra imports, site-packages is no trusted folder: numpy (whose __array_interface__
    reaches any memory address) cannot be loaded, even through a trusted importer (pkgutil)."""
    if pool.backend == "docker":
        pytest.skip("the sandbox image holds no third-party package")
    body = "m = typing.sys.modules['importlib'].import_module\nm('pkgutil').resolve_name('numpy')"
    r = score_once(pool, "numpy", hostile(body))
    assert r.verdict == "forbidden" and "site-packages/numpy" in r.error, r


def test_secret_env_var_never_reaches_the_sandbox(pool):
    r = score_once(pool, "environ", hostile(f"raise ValueError(repr({OS}.environ.get({SECRET_VAR!r})))"))
    assert r.verdict == "error" and r.error == "ValueError: None", r


def test_no_forged_protocol_lines(pool):
    """The task holds no protocol pipe of its zygote: forged responses written to every descriptor reach
    nobody (at most its own answer is garbled), and the next request gets its true answer."""
    forged = '{"id": %d, "ok": true, "result": [1.0], "errors": [null], "verdict": "ok"}\\n'
    body = (f"os = {OS}\nfor fd in range(3, 256):\n    for i in range(1, 200):\n        try:\n"
            f"            os.write(fd, (b'{forged}' % i))\n        except OSError:\n            break")
    r = score_once(pool, "forger", hostile(body))
    assert r.verdict != "ok" or r.score == 1.0  # its own answer: garbled, or never written over
    name, source = resolve_environment("repeat_digits")
    pool.load(name, source)
    got = pool.score(name, [{"data": {"digit": 3, "length": 4}, "response": "x"}] * 3)
    assert [(x.score, x.verdict) for x in got] == [(0.0, "ok")] * 3


def test_a_forged_answer_before_a_refused_operation_is_still_forbidden(pool):
    """The task writes a perfect answer to its result pipe (whichever descriptor it is), then does something
    forbidden: the guard ends it, and the zygote reports the task as forbidden, not the forged score."""
    forged = '{"id": 0, "ok": true, "result": [1.0], "errors": [null]}'
    body = (f"os = {OS}\ndata = {forged!r}.encode()\nframe = len(data).to_bytes(8, 'big') + data\n"
            "for fd in range(3, 64):\n    try:\n        os.write(fd, frame)\n    except OSError:\n        pass\n"
            f"{OS}.system('true')")
    r = score_once(pool, "forge_then_system", hostile(body))
    assert (r.score, r.verdict) == (0.0, "forbidden"), r
    assert r.error.startswith("forbidden: ")


def test_benign_code_runs_under_the_guard(pool):
    """What the stdlib does at runtime stays allowed: dataclasses and namedtuple (exec), typing, enum,
    json, re, random, fractions, decimal, statistics, lazy imports, the scratch directory, /dev/urandom,
    and hitting the recursion limit (deepcopy's audited id() calls) is a RecursionError, not "forbidden"."""
    top = ("import re, fractions, decimal, statistics, json.tool\n@dataclasses.dataclass(frozen=True)\n"
           "class Point:\n    x: int\n    y: int = 0\n"
           "Pair = collections.namedtuple('Pair', 'a b')\nclass Color(enum.Enum):\n    RED = 1\n"
           "class NT(typing.NamedTuple):\n    a: int\n")
    body = ("p = Point(1, 2)\nassert dataclasses.asdict(p) == {'x': 1, 'y': 2} and Pair(1, 2).b == 2\n"
            "assert NT(3).a == 3 and Color(1) is Color.RED and typing.get_type_hints(Point)['x'] is int\n"
            "@dataclasses.dataclass\nclass Local:\n    items: list = dataclasses.field(default_factory=list)\n"
            "assert Local().items == [] and json.loads(json.dumps({'a': [1]})) == {'a': [1]}\n"
            "assert re.compile(r'(\\d+)-(\\d+)').match('12-34').group(2) == '34'\n"
            "assert random.Random(7).random() == random.Random(7).random()\n"
            "assert fractions.Fraction(1, 3) * 3 == 1 and decimal.Decimal('0.1') * 3 == decimal.Decimal('0.3')\n"
            "assert statistics.median([3, 1, 2]) == 2 and string.Template('$a').substitute(a=1) == '1'\n"
            "f = dataclasses.builtins.open('/tmp/scratch.txt', 'w')\nf.write('hi')\nf.close()\n"
            "assert dataclasses.builtins.open('/tmp/scratch.txt').read() == 'hi'\n"
            "assert len(dataclasses.builtins.open('/dev/urandom', 'rb').read(8)) == 8\n"
            "assert json.tool.main\nimport copy\nx = []\nfor _ in range(20000):\n    x = [x]\n"
            "try:\n    copy.deepcopy(x)\nexcept RecursionError:\n    pass  # an error, as without the guard")
    r = score_once(pool, "benign", hostile(body, top=top))
    assert (r.score, r.verdict) == (1.0, "ok"), r


def test_seed_environments_run_under_the_guard(pool):
    for name in ("knapsack", "sat3", "n_queens", "repeat_digits"):
        name, source = resolve_environment(name)
        pool.load(name, source)
        insts = pool.sample(name, list(range(4)), 2)
        res = pool.score(name, [{"data": i["data"], "response": i["reference"]} for i in insts])
        assert [(x.score, x.verdict) for x in res] == [(1.0, "ok")] * 4, (name, res)


# -- without a sandbox --------------------------------------------------------------------------------
def test_the_hook_reads_no_global_and_calls_no_helper():
    """Environment code can replace any module attribute or builtin: the hook must look none up at event
    time (no LOAD_GLOBAL/LOAD_NAME) and define no nested function (one frame, nothing to leak)."""
    hook = guard._make_hook(1, frozenset(ALLOWED_IMPORTS), guard._settings("/tmp"))
    ops = {i.opname for i in dis.get_instructions(hook)}
    assert not ops & {"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "IMPORT_NAME"}, ops
    assert not [c for c in hook.__code__.co_consts if isinstance(c, types.CodeType)]
    assert all(not isinstance(c.cell_contents, (list, dict, set)) for c in hook.__closure__
               if c.cell_contents is not guard.__dict__)  # no mutable state but the identity check's globals


def test_every_module_alias_in_allowed_modules_is_refused_statically():
    """The static table covers every attribute of an allowed module (and its allowed submodules) that is
    a module outside the allowlist, e.g. typing.sys, dataclasses.inspect, random._os, enum.bltns."""
    allowed, seen, missed = set(ALLOWED_IMPORTS), set(), []

    def scan(mod, depth=0):
        if id(mod) in seen or depth > 3:
            return
        seen.add(id(mod))
        for attr, value in list(vars(mod).items()):
            if isinstance(value, types.ModuleType):
                if value.__name__.split(".")[0] in allowed:
                    scan(value, depth + 1)
                elif not static_problems(f"import {mod.__name__}\nx = {mod.__name__}.{attr}"):
                    missed.append(f"{mod.__name__}.{attr}")
    for name in ALLOWED_IMPORTS:
        scan(importlib.import_module(name))
    assert not missed


def test_verdict_and_error_format():
    from envs.sandbox.limits import verdict_of_error
    assert verdict_of_error("forbidden: audit event 'os.system'") == "forbidden"
    assert verdict_of_error("RuntimeError: can't start new thread") == "forbidden"


def test_static_rules_for_attribute_names():
    ok = ("import random\nclass E:\n    def f(self, x):\n        return getattr(self, 'cache', None), hasattr(x, 'n'), "
          "setattr(self, 'cache', 1), random.choice([1])\n")
    assert static_problems(ok) == []
    for bad, words in [("getattr(x, name)", "not a string literal"), ("f = getattr", "other than a direct call"),
                       ("getattr(x, 'sys')", "names a module"), ("from typing import sys", "names a module"),
                       ("x.__dict__", "'__dict__'"), ("len.__self__", "'__self__'"), ("x.bltns", "'bltns'"),
                       ("getattr(*args)", "unpacked"), ("import operator\noperator.attrgetter(n)", "string literal"),
                       ("import operator\noperator.methodcaller('__dict__')", "'__dict__'")]:
        problems = static_problems(bad)
        assert problems and words in problems[0], (bad, problems)


def test_seed_sources_pass_the_static_check():
    from envs.adapters.reasoning_gym import TEMPLATE_PATH
    for path in sorted((ENVS_DIR / "seeds").glob("*.py")) + sorted((ENVS_DIR / "builtin").glob("*.py")):
        assert static_problems(path.read_text()) == [], path
    assert static_problems(TEMPLATE_PATH.read_text(), ["reasoning_gym"]) == []
