"""The environment protocol: one source file defines one environment class.

Environment code is untrusted (it may be model-written). It only ever runs
inside a worker process (see envs.worker); only JSON crosses the boundary.
"""
from __future__ import annotations

import functools
import itertools
import random
import sys
import traceback
import types
from dataclasses import asdict, dataclass, fields

METHODS = ("sample", "prompt", "reference", "score")
_counter = itertools.count()


class EnvironmentLoadError(Exception):
    """The source could not be turned into an environment instance."""


class Environment:
    """Base class for environments (subclassing is optional: duck typing works).

    Contract:
      * ``sample(rng, difficulty)`` is deterministic given ``rng`` and returns
        a JSON-serialisable dict (the instance data); difficulty is an int >= 0.
      * ``prompt``, ``reference`` and ``score`` are pure functions of the
        instance data (as it comes back from a JSON round trip).
      * ``score(instance, reference(instance))`` should be 1.0; scores lie in [0, 1].
      * ``reference`` returns a response string, or just the answer as any JSON-serialisable
        value (a number, a bool, a list or dict of those): the worker writes it in its one text
        form (envs.parsing.answer_text: ints as ``str(x)``, integral floats as ints, bools as
        "true"/"false", lists and dicts as one line of JSON) and wraps that as a response in the
        environment's ``answer_format`` (``\\boxed{...}``, a ``` block, or the text alone) before
        ``score`` sees it. None and values JSON cannot write are refused.
      * ``answer_format`` names how answers are written (see envs.parsing):
        "final_line", "boxed", "fenced", "auto" or "raw".
    """

    name: str = ""
    description: str = ""
    answer_format: str = "final_line"

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        """Return a new JSON-serialisable instance dict drawn from ``rng``."""
        raise NotImplementedError

    def prompt(self, instance: dict) -> str:
        """Return the prompt text shown to the model."""
        raise NotImplementedError

    def reference(self, instance: dict):
        """Return a response text that scores 1.0, or the answer as a JSON-serialisable value (see above)."""
        raise NotImplementedError

    def score(self, instance: dict, response: str) -> float:
        """Return a score in [0, 1] for ``response``."""
        raise NotImplementedError


@dataclass
class Instance:
    """One sampled problem, as stored and sent around by the trainer."""

    env: str
    seed: int
    difficulty: int
    data: dict
    prompt: str
    reference: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Instance":
        # Ignore unknown keys so older/newer records still load.
        return cls(**{f.name: d[f.name] for f in fields(cls)})


def _is_candidate(obj: object, module_name: str) -> bool:
    if not isinstance(obj, type) or obj.__module__ != module_name:
        return False  # imported classes do not count
    if issubclass(obj, Environment):
        return True
    return isinstance(getattr(obj, "name", None), str) and all(
        callable(getattr(obj, m, None)) for m in METHODS)


def _where(exc: BaseException, filename: str) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    return f"{filename}, line {frames[-1].lineno}" if frames else filename


@functools.lru_cache(maxsize=64)
def compile_source(source: str, filename: str):
    """Compiling runs nothing, so a sandbox's zygote compiles once and its forked tasks reuse the code."""
    return compile(source, filename, "exec")


def load_environment(source: str, filename: str = "<env>") -> Environment:
    """Exec ``source`` in a fresh module and return its environment instance."""
    if not isinstance(source, str):
        raise EnvironmentLoadError(f"{filename}: source must be a str, got {type(source).__name__}")
    try:
        code = compile_source(source, filename)
    except SyntaxError as e:
        raise EnvironmentLoadError(
            f"syntax error in {filename} at line {e.lineno}: {e.msg}") from None
    except ValueError as e:  # e.g. null bytes
        raise EnvironmentLoadError(f"cannot compile {filename}: {e}") from None

    module_name = f"_evoforge_env_{next(_counter)}"
    module = types.ModuleType(module_name)
    module.__file__ = filename
    # Registered so dataclasses/typing inside env code can find their module.
    sys.modules[module_name] = module
    try:
        exec(code, module.__dict__)
    except (Exception, SystemExit) as e:
        del sys.modules[module_name]
        raise EnvironmentLoadError(
            f"exception while loading {_where(e, filename)}: {type(e).__name__}: {e}") from None

    try:
        return _instance_of(module, filename)
    except EnvironmentLoadError:
        del sys.modules[module_name]  # a long-lived worker keeps nothing of an environment that did not load
        raise


def _instance_of(module: types.ModuleType, filename: str) -> Environment:
    """The one environment class defined in ``module``, instantiated."""
    module_name = module.__name__
    found = [o for o in vars(module).values() if _is_candidate(o, module_name)]
    if any(issubclass(c, Environment) for c in found):
        found = [c for c in found if issubclass(c, Environment)]
    # A base class of another candidate (an intermediate base) is not the env.
    found = [c for c in found if not any(o is not c and issubclass(o, c) for o in found)]
    if not found:
        raise EnvironmentLoadError(
            f"{filename}: no environment class found (subclass envs.protocol.Environment "
            f"or define a class with a 'name' attribute and methods {', '.join(METHODS)})")
    if len(found) > 1:
        names = ", ".join(sorted(c.__name__ for c in found))
        raise EnvironmentLoadError(f"{filename}: expected one environment class, found {len(found)}: {names}")
    cls = found[0]
    try:
        env = cls()
    except (Exception, SystemExit) as e:
        raise EnvironmentLoadError(
            f"could not instantiate {cls.__name__} ({_where(e, filename)}): {type(e).__name__}: {e}") from None
    if not isinstance(getattr(env, "name", None), str) or not env.name:
        raise EnvironmentLoadError(f"{filename}: {cls.__name__}.name must be a non-empty string")
    return env
