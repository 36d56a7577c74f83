"""The runtime guard of a sandbox task: a CPython audit hook (PEP 578) over environment code.

The zygote (``envs.sandbox.zygote._run_child``) installs it in every task, after the task has dropped
its privileges and before any environment code runs. The OS isolation (bubblewrap or Docker) stays the
boundary; the guard refuses, inside it, what environment code must never do, whatever path the code took
to get there: a module attribute (``dataclasses.sys.modules['os']``), a computed ``getattr``, a module
already in ``sys.modules``, builtins reached through another module, a string some library evaluates.
Audit events fire in the interpreter at the operation itself, so the path does not matter.

The rule (the tables below):

* Refused whoever asks (``REFUSED_EVENTS``, ``REFUSED_PREFIXES``): creating or signalling processes,
  sockets and network clients, ctypes, creating code objects and unmarshalling (crafted bytecode can
  corrupt memory), gc object walks, trace/profile functions, new audit hooks, sub-interpreters, links
  and symlinks, chdir, file locks and ioctls, sqlite (it opens files behind ``open``'s back), resource
  limits, breakpoints and input.
* Files (``open``, ``READ_EVENTS``, ``WRITE_EVENTS``), on the path with ``..`` and symlinks resolved:
  writing only inside the task's scratch directory (``/tmp`` in bubblewrap and Docker); reading only the
  scratch directory, the trusted roots and a few devices (``/dev/null``, ``/dev/urandom``...); listing
  the ``sys.path`` folders too (the import system does; names only). Paths relative to a directory
  descriptor (``dir_fd``, and any relative path given to ``os.open``, whose event hides its ``dir_fd``)
  are refused: they cannot be resolved. Not /etc, /proc, /home, the project, the host.
* Native code (the ``import`` event of an extension module, which names its file) only from the trusted
  roots: never a ``.so`` the task wrote to its scratch directory.
* Refused when environment code raises them, allowed from trusted code (``UNTRUSTED_EVENTS``):
  ``compile`` and ``exec`` (dataclasses, namedtuple, typing and the loader itself compile and exec at
  runtime), ``import`` of a module outside the allowlist (trusted libraries import lazily; the importer
  is found past importlib's own frames, so ``importlib.import_module`` counts as its caller),
  ``sys._getframe`` (namedtuple, typing and enum call it), ``object.__getattr__`` (reading ``tb_frame``,
  ``f_code``, ``gi_frame``, ``__code__``: the traceback module does) and ``object.__setattr__`` /
  ``object.__delattr__`` (``__code__``, ``__defaults__``, a type's ``__module__``...).
* Everything else is allowed (``builtins.id``, ``array``, ``mmap``, ``glob``/``shutil``/``tempfile``
  whose file operations are checked one by one, ``os.putenv``, ``pickle.find_class``...).

Trusted code is code whose file lies under a trusted root, or a frozen stdlib module. The trusted roots
are the standard library and the project's ``envs`` package; for a pool with trusted extra imports
(``Limits.extra_imports``, e.g. reasoning_gym) also the ``sys.path`` folders (site-packages: those
libraries import their own dependencies lazily and read their data files there). Environment code
(``<env:...>``), whatever it compiles (``<string>``) and files in the scratch directory are not trusted.
So a plain pool's tasks can load no third-party package at all (numpy, cffi...), by any route.

A refused event ends the task at once: the hook writes the task's answer, ``{"ok": false, "error":
"forbidden: audit event 'os.system'..."}`` (the error always starts so, with the event's name), to the
task's result pipe and calls ``os._exit(EXIT_FORBIDDEN)``. Environment code can neither catch it nor
carry on; the zygote reports verdict "forbidden" (limits.verdict_of_error). (Code that writes a forged
answer to its result pipe *before* doing something forbidden still has that refused and its task ended;
only the exit status, 86, then tells the attempt apart.)

Tamper-proofing. Environment code can reach any loaded module, this one included, so the hook reads no
module global and no builtin at event time (either could be replaced): it is one function, a closure
over C functions and immutable values bound at install time, and nothing else holds a reference to it
(the interpreter's hook list is reachable only through gc, which is refused). It looks at an event's
arguments only after checking their exact type (a str subclass could run code in a comparison) and never
calls an environment object. Any failure inside it ends the task as forbidden too (but RecursionError
and MemoryError, which fail the operation as they would have anyway). Its own
``sys._getframe`` calls are recognised by their frame's globals (this module's). What no audit event
covers is left to the kernel: a guarded task gets RLIMIT_NPROC 0, so ``_posixsubprocess.fork_exec`` and
threads (CPython 3.11 audits neither) fail; and lazy imports compile from source (``sys.pycache_prefix``
points nowhere) so ``marshal.loads`` can be refused outright.

Limits. An audit hook is not a sandbox (PEP 578 says so): a library with raw memory access loaded in the
task (numpy's ``__array_interface__`` with a chosen address, which a reasoning_gym pool has loaded) can
overwrite the interpreter and the hook with it. The OS isolation and the kernel limits stay the boundary.
"""
from __future__ import annotations

import builtins
import json
import os
import resource
import sys
import sysconfig
import types

# -- the tables ---------------------------------------------------------------------------------
REFUSED_EVENTS = frozenset({
    # processes and signals
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.startfile",
    "os.startfile/2", "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
    "resource.setrlimit", "resource.prlimit",
    # threads and interpreters (3.11 raises no thread event; RLIMIT_NPROC 0 stops threads)
    "_thread.start_new_thread", "cpython.PyInterpreterState_New", "cpython.PyInterpreterState_Clear",
    "cpython.run_command", "cpython.run_file", "cpython.run_interactivehook", "cpython.run_module",
    "cpython.run_startup", "cpython.run_stdin",
    # the hook and the interpreter's internals
    "sys.addaudithook", "sys.settrace", "sys.setprofile", "sys._current_frames", "sys._current_exceptions",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "code.__new__", "marshal.load", "marshal.loads",
    "setopencodehook", "builtins.breakpoint", "builtins.input", "pdb.Pdb",
    # file-system operations with no place in a task
    "os.symlink", "os.link", "os.chown", "os.chdir", "os.chflags", "os.lockf", "os.setxattr",
    "os.removexattr", "os.getxattr", "os.listxattr", "os.add_dll_directory",
    # network clients and the like
    "ensurepip.bootstrap", "webbrowser.open", "urllib.Request",
})
REFUSED_PREFIXES = ("socket.", "ctypes.", "fcntl.", "sqlite3.", "syslog.", "ftplib.", "http.client.",
                    "imaplib.", "nntplib.", "poplib.", "smtplib.", "telnetlib.", "winreg.", "msvcrt.", "_winapi.")
READ_EVENTS = frozenset({"os.listdir", "os.scandir"})  # and "open" without a write flag
# event: (positions of its path arguments, positions of its dir_fd arguments)
WRITE_EVENTS = (("os.mkdir", (0,), (2,)), ("os.rmdir", (0,), (1,)), ("os.remove", (0,), (1,)),
                ("os.rename", (0, 1), (2, 3)), ("os.truncate", (0,), ()), ("os.utime", (0,), (3,)),
                ("os.chmod", (0,), (2,)))
UNTRUSTED_EVENTS = frozenset({"compile", "exec", "import", "sys._getframe", "object.__getattr__",
                              "object.__setattr__", "object.__delattr__"})
# frequent events let through at once (any event in no table is allowed too, after a few more checks)
PASSTHROUGH = frozenset({"builtins.id", "array.__new__", "function.__new__", "marshal.dumps", "sys.excepthook",
                         "sys.unraisablehook", "pickle.find_class", "os.putenv", "os.unsetenv", "time.sleep"})
DEVICES_READ = frozenset({"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full"})
DEVICES_WRITE = frozenset({"/dev/null"})
NO_PYCACHE = "/nonexistent/evoforge-no-pycache"  # sys.pycache_prefix in a task: lazy imports compile from source
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
FORBIDDEN_PREFIX = "forbidden: "  # every error the guard reports starts so (limits.verdict_of_error)
EXIT_FORBIDDEN = 86  # the exit status of a task the guard ended (after writing its "forbidden" answer)
# The zygote's environment variable that turns the guard off when set to "off". Only a launcher sets a
# sandbox's environment (bubblewrap clears it, Docker and the process backend pass an explicit one), and
# only tests/envs/test_sandbox.py does, to test the OS isolation on its own.
SWITCH = "EVOFORGE_RUNTIME_GUARD"
ENVS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_WRITE_EVENT_NAMES = frozenset(name for name, _, _ in WRITE_EVENTS)
_HEAD = b'{"id": null, "ok": false, "result": null, "error": '  # the hook's answer, up to the error text
_FAILSAFE_BODY = _HEAD + json.dumps(FORBIDDEN_PREFIX + "the sandbox guard failed on an audit event").encode() + b"}"
_FAILSAFE = len(_FAILSAFE_BODY).to_bytes(8, "big") + _FAILSAFE_BODY  # the zygote's framing: length, then JSON


class ForbiddenImport(ImportError):
    pass


# -- the trusted roots (computed in the zygote, before tasks fork) -------------------------------------
def _forms(path: str) -> set[str]:
    """A folder as written and with its symlinks resolved (frames carry the first, resolved paths the second)."""
    return {os.path.normpath(os.path.abspath(path)), os.path.realpath(path)}


def _roots() -> tuple[frozenset, frozenset, frozenset, frozenset]:
    """(stdlib and envs, site-packages and other sys.path folders, folders never trusted, listable folders)."""
    stdlib = set(_forms(ENVS_DIR))
    for path in [sysconfig.get_paths()["stdlib"]] + [p for p in sys.path if p.endswith(".zip")]:
        stdlib |= _forms(path)
    never = {form + "/" + name for form in stdlib for name in ("site-packages", "dist-packages")}
    project = _forms(os.path.dirname(ENVS_DIR))  # outside a sandbox, the project root: envs alone counts
    listable = {form for entry in sys.path if entry for form in _forms(entry)}
    return frozenset(stdlib), frozenset(listable - project - stdlib), frozenset(never), frozenset(listable)


_STDLIB_ROOTS, _PATH_ROOTS, _NEVER_ROOTS, _LISTABLE = _roots()


def trusted_roots(extra_imports=(), scratch: str = "/tmp") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(trusted folders, folders under them that are not): readable, and code in them is trusted.

    The standard library and envs; with trusted extra imports also the sys.path folders and the extra
    imports' own folders. Never the scratch directory, nor a folder above it (e.g. "/").
    """
    roots, never = set(_STDLIB_ROOTS), set(_NEVER_ROOTS)
    if extra_imports:
        roots |= _PATH_ROOTS
        never = set()
        for name in extra_imports:
            mod = sys.modules.get(name)
            for path in list(getattr(mod, "__path__", None) or []) + [getattr(mod, "__file__", None) or ""]:
                if path and not os.path.normpath(path).startswith(tuple(r + "/" for r in roots)):
                    roots |= _forms(path if os.path.isdir(path) else os.path.dirname(path))
    scratch = os.path.realpath(scratch)
    roots = {r for r in roots if r != "/" and r != scratch and not scratch.startswith(r + "/")}
    return tuple(sorted(roots)), tuple(sorted(never))


def _settings(scratch: str, extra_imports=()) -> tuple:
    """The hook's fixed data for a scratch directory and extra imports (immutable values only)."""
    key = (scratch, tuple(extra_imports))
    if key not in _SETTINGS:
        roots, never = trusted_roots(extra_imports, scratch)
        real = os.path.realpath(scratch)
        # what the sandbox binds in from the host (the interpreter, a venv, the envs package) can lie under the
        # scratch directory, e.g. a checkout in /tmp: it stays outside the scratch rule, read only where trusted
        bound = {form for path in (sys.prefix, sys.base_prefix, ENVS_DIR, *sys.path) if path
                 for form in _forms(path)}
        host_bound = tuple(sorted(b + "/" for b in bound if b.startswith(real + "/")))
        quotable = [r for r in roots + never if "'" not in r and "\\" not in r and r.isprintable()]
        _SETTINGS[key] = (
            real,
            tuple(r + "/" for r in roots),  # trusted folders: native code, and readable
            tuple(r + "/" for r in never) or ("\0",),  # never trusted, though under one of those
            tuple("'" + r + "/" for r in quotable if r in roots) + ("'<frozen ",),  # trusted code, as repr shows it
            tuple("'" + r + "/" for r in quotable if r in never) or ("\0",),
            frozenset(roots) | _LISTABLE | DEVICES_READ | {real},  # readable paths (folders to list, devices)
            real + "/",  # writable folder
            tuple(r + "/" for r in roots if r.startswith(real + "/")) + host_bound or ("\0",),  # never writable
            ascii(real),
            host_bound or ("\0",),  # under the scratch directory but the host's: readable only where trusted
        )
    return _SETTINGS[key]


_SETTINGS: dict = {}
_settings(os.environ.get("TMPDIR") or "/tmp")  # the usual case, before tasks fork: it costs a task nothing


# -- installing it -------------------------------------------------------------------------------------
def install(out_fd: int, allowed_imports, scratch: str = "/tmp", extra_imports=()) -> None:
    """Guard this task: refuse forbidden operations, answering "forbidden" on ``out_fd`` (with id null: the
    zygote stamps the request's id on every answer). See the module doc."""
    allowed = frozenset(allowed_imports) | frozenset(extra_imports)
    builtins.__import__ = _import_wrapper(allowed, builtins.__import__)
    sys.dont_write_bytecode = True  # a lazy import must not try to write a .pyc (outside the scratch dir)
    sys.pycache_prefix = NO_PYCACHE  # ... nor read one: marshal.loads is refused
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no process or thread, whatever the route
    sys.addaudithook(_make_hook(out_fd, allowed, _settings(scratch, extra_imports)))


def _import_wrapper(allowed: frozenset, real_import):
    """The import statement in environment modules (``_evoforge_env*``) reaches only allowed modules.

    The hook's "import" rule covers the modules not loaded yet, whatever the route; this covers the ones
    already in sys.modules, imported plainly: it raises the "import" audit event itself, so the refusal is
    the hook's (the task ends, "forbidden: audit event 'import'...").
    """
    audit = sys.audit

    def guarded(name, globals=None, locals=None, fromlist=(), level=0):
        caller = (globals or {}).get("__name__", "")
        if type(caller) is str and caller.startswith("_evoforge_env") and level == 0 \
                and str(name).split(".")[0] not in allowed:
            audit("import", str(name), None, sys.path, sys.meta_path, sys.path_hooks)  # ends the task
            raise ForbiddenImport(f"import of {name!r} is not allowed in environment code")
        return real_import(name, globals, locals, fromlist, level)

    return guarded


def _make_hook(out_fd: int, allowed: frozenset, settings: tuple):
    """The audit hook. Every name it uses is bound here, once: it reads no global and no builtin later."""
    (scratch, code_prefixes, never_prefixes, trusted_files, never_files, read_exact, write_prefix,
     write_exceptions, scratch_text, host_bound) = settings
    read_prefixes = code_prefixes + (write_prefix, NO_PYCACHE + "/")
    importlib_files = ("'<frozen importlib.",) + tuple(f[:-1] + "/importlib/" for f in trusted_files
                                                        if f.startswith("'/"))  # import machinery
    write_exact, passthrough, refused, refused_prefixes = DEVICES_WRITE, PASSTHROUGH, REFUSED_EVENTS, REFUSED_PREFIXES
    read_events, untrusted, write_events = READ_EVENTS, UNTRUSTED_EVENTS, WRITE_EVENTS
    write_event_names, write_flags = _WRITE_EVENT_NAMES, WRITE_FLAGS
    head, failsafe, prefix, exit_code = _HEAD, _FAILSAFE, FORBIDDEN_PREFIX + "audit event ", EXIT_FORBIDDEN
    guard_globals = globals()
    _type, _str, _bytes, _int, _frame = type, str, bytes, int, types.FrameType
    _repr, _ascii, _len, _to_bytes = repr, ascii, len, int.to_bytes
    _getframe, _readlink, _getcwd, _write, _exit = sys._getframe, os.readlink, os.getcwd, os.write, os._exit
    _BaseException, _OSError, _ValueError = BaseException, OSError, ValueError
    _RecursionError, _MemoryError = RecursionError, MemoryError

    def hook(event, args):
        # One function on purpose: no helper, no global, no builtin by name (see the module doc). `why`
        # becomes the reason when the event is refused; the hook returns when it is allowed.
        try:
            why, paths, dir_fds, mode = None, (), (), "read"
            if _type(event) is not _str:
                why, event = "an event name that is not a str", "?"
            elif event in passthrough:
                return
            elif event in refused or event.startswith(refused_prefixes):
                why = ""
            elif event == "open":
                path, flags = args[0], args[2]
                paths, mode = (path,), "write" if _type(flags) is not _int or flags & write_flags else "read"
                if args[1] is None and (_type(path) is _str and not path.startswith("/")
                                        or _type(path) is _bytes and not path.startswith(b"/")):
                    dir_fds = (path,)  # os.open: a relative path may be relative to a dir_fd the event hides
            elif event in read_events:
                paths = (args[0],)
            elif event in write_event_names:
                mode = "write"
                for name, at, fd_at in write_events:
                    if name == event:
                        for i in at:
                            paths += (args[i],)
                        for i in fd_at:
                            dir_fds += (args[i],)
            elif event == "import" and args[1] is not None:
                paths, mode = (args[1],), "native"  # an extension module, from this file
            elif event not in untrusted:
                return

            # the paths, resolved (absolute, .. and symlinks), against the rule of their mode
            for fd in dir_fds:
                if fd is not None and why is None:
                    why = "a path relative to a directory descriptor (or a relative path for os.open)"
            for path in paths:
                if why is not None:
                    break
                if _type(path) is _int:
                    continue  # an open descriptor: opened under this rule
                if path is None and mode == "read":
                    path = "."  # os.listdir(): the current folder
                if _type(path) is _bytes:
                    try:
                        path = path.decode("utf-8")
                    except _ValueError:
                        why = "a path that is not UTF-8"
                        break
                if _type(path) is not _str:
                    why = "a path that is not a str, bytes or descriptor"
                    break
                if "\0" in path:
                    why = "a path with a NUL byte"
                    break
                pending = (path if path.startswith("/") else _getcwd() + "/" + path).split("/")
                pending.reverse()
                parts, hops = [], 0
                while pending:
                    part = pending.pop()
                    if part == "" or part == ".":
                        continue
                    if part == "..":
                        if parts:
                            parts.pop()
                        continue
                    parts.append(part)
                    try:
                        target = _readlink("/" + "/".join(parts))  # readlink only: stat results could be patched
                    except _OSError:
                        continue  # not a symlink, or missing: a plain name
                    parts.pop()
                    hops += 1
                    if hops > 40 or _type(target) is not _str:
                        why = "a path with too many symlinks"
                        break
                    if target.startswith("/"):
                        parts = []
                    more = target.split("/")
                    more.reverse()
                    pending += more
                if why is not None:
                    break
                real = "/" + "/".join(parts)
                shown = _ascii(real)[:300]
                if mode == "write":
                    if not (real in write_exact or real.startswith(write_prefix)
                            and not real.startswith(write_exceptions)):
                        why = "writing " + shown + " (outside the scratch directory " + scratch_text + ")"
                elif mode == "native":
                    if not real.startswith(code_prefixes) or real.startswith(never_prefixes):
                        why = "native code from " + shown + " (outside the trusted folders)"
                elif not (real in read_exact or real.startswith(read_prefixes)
                          and not real.startswith(never_prefixes)
                          and (not real.startswith(host_bound) or real.startswith(code_prefixes))):
                    why = "reading " + shown + " (outside the sandbox's read paths)"

            # the events refused when environment code raises them
            if why is None and event in untrusted:
                if event == "sys._getframe":
                    frame = args[0]
                    if _type(frame) is _frame and frame.f_globals is guard_globals:
                        return  # this hook's own call just below (or a function running with its globals)
                caller = _getframe(0).f_back  # the frame that raised the event
                why = "raised by environment code"
                if event == "import":
                    name = args[0]
                    if _type(name) is not _str:
                        why, caller = "a module name that is not a str", None
                    elif name.partition(".")[0] in allowed:
                        return
                    else:  # the importer: past the import machinery and the import-statement guard
                        while caller is not None and (caller.f_globals is guard_globals or _repr(caller).partition(
                                ", file ")[2].startswith(importlib_files)):
                            caller = caller.f_back
                        why = _ascii(name)[:200] + " imported by environment code (not an allowed import)"
                if caller is not None:
                    file = _repr(caller).partition(", file ")[2]
                    if file.startswith(trusted_files) and not file.startswith(never_files):
                        return
            if why is None:
                return
            text = prefix + _ascii(event) + (": " + why if why else "")
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
            body = head + text.encode("ascii") + b"}"
            data = _to_bytes(_len(body), 8, "big") + body
        except (_RecursionError, _MemoryError):
            raise  # the operation fails as it would have without the hook (its frame holds nothing mutable)
        except _BaseException:
            data = failsafe
        try:
            while data:
                data = data[_write(out_fd, data):]
        finally:
            _exit(exit_code)

    return hook


def _warm_up() -> None:
    """Run the guard's code a few times in the zygote, before tasks fork. CPython 3.11 specialises
    bytecode as it runs it; a task doing that first would copy those memory pages (~0.2 ms a task).
    Only events the hook lets through: a refused one would end the zygote."""
    settings = _settings(os.environ.get("TMPDIR") or "/tmp")
    for _ in range(16):
        _import_wrapper(frozenset(), builtins.__import__)
        hook = _make_hook(-1, frozenset({"json"}), settings)
        for event, args in (("builtins.id", (0,)), ("x.y", ()), ("import", ("json", None, [], [], [])),
                            ("open", ("/dev/null", "r", os.O_RDONLY))):
            hook(event, args)


_warm_up()
