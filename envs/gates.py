"""The static admission gates of an environment (SPEC section 1), run against a sandbox pool.

L1 load:        the source parses, imports only allowed modules, uses no escape hatches,
                and loads in the sandbox within its limits.
L2 consistent:  the same seed gives the same instance; score(instance, reference) == 1 on every
                sampled instance, over several difficulties.
L3 not gameable: empty, constant and random answers score (on average) at most `bound`.

Every decision is made here, outside the sandbox, from JSON results: environment
code can only report its own scores, never a gate's verdict.
"""
from __future__ import annotations

import ast
import random
import string
import sys
from dataclasses import asdict, dataclass, field

from envs.sandbox.limits import ALLOWED_IMPORTS

# Everything the static L1 check refuses, in one place. It is the cheap first filter: a clear reason
# before anything runs. The sandbox's runtime guard (envs/sandbox/guard.py, an audit hook in every task)
# refuses the operations themselves whatever route the code took, so this table need not be complete.
REFUSED = {
    # names refused anywhere, as a name or as an attribute: code execution, files, namespaces, frames
    "names": frozenset({
        "__import__", "__loader__", "__spec__", "__builtins__", "__globals__", "__code__", "__closure__",
        "__subclasses__", "__getattribute__", "__dict__", "__self__", "__mro__", "__bases__", "__base__",
        "eval", "exec", "compile", "open", "globals", "breakpoint", "input", "vars",
        "tb_frame", "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "gi_frame", "gi_code",
        "cr_frame", "cr_code", "ag_frame", "ag_code", "co_code",
    }),
    # attributes (and `from m import name`) naming a module outside the allowed imports: every name in
    # sys.stdlib_module_names except ALLOWED_IMPORTS and the pool's extra imports (typing.sys,
    # dataclasses.inspect, json.codecs, dataclasses._thread...), plus these aliases of such modules
    # inside allowed modules that are not named like one (tests/envs/test_hostile.py checks the list)
    "module_aliases": frozenset({"_os", "_sys", "bltns"}),  # random._os, collections._sys, enum.bltns
    # functions that reach an attribute by a name given at runtime: only as a direct call whose name
    # argument(s) (position given here; None: all of them) are string literals that pass the rules above
    "by_name": {"getattr": 1, "setattr": 1, "delattr": 1, "hasattr": 1, "attrgetter": None, "methodcaller": 0},
    # also refused: imports outside ALLOWED_IMPORTS and the extra imports, relative imports, and private
    # attributes (a leading underscore) of imported modules, e.g. random._os
}
ESCAPE_HATCHES = REFUSED["names"]  # the former name of the first row
# every gate a proposed environment meets, in order (self-play adds parse, novelty, L4 and L5 around L1-L3)
PROPOSAL_GATES = ("parse", "L1", "L2", "L3", "novelty", "L4", "L5")
CONSTANT_ANSWERS = ["0", "1", "-1", "yes", "no", "true", "a", "[]", "[0]", "{}", "Answer: 0", "\\boxed{0}"]


@dataclass
class GateResult:
    gate: str
    passed: bool
    reason: str
    details: dict = field(default_factory=dict)


@dataclass
class CheckConfig:
    seeds_per_difficulty: int = 8
    difficulties: list[int] = field(default_factory=lambda: [1, 2, 3, 5])
    random_answers: int = 8
    bound: float = 0.05  # L3: highest mean score a probe answer may get
    extra_imports: list[str] = field(default_factory=list)


def refused_module_names(extra_imports=()) -> frozenset[str]:
    """Attribute names L1 refuses as modules: stdlib modules outside the allowed imports, and known aliases."""
    allowed = set(ALLOWED_IMPORTS) | {m.split(".")[0] for m in extra_imports}
    return frozenset(sys.stdlib_module_names - allowed) | REFUSED["module_aliases"]


def static_problems(source: str, extra_imports=()) -> list[str]:
    """Reasons the source is refused before it runs (empty list: none), in reading order; rules in REFUSED."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [f"syntax error at line {e.lineno}: {e.msg}"]
    allowed = set(ALLOWED_IMPORTS) | set(extra_imports)
    module_names, names, by_name = refused_module_names(extra_imports), REFUSED["names"], REFUSED["by_name"]
    found: list[tuple[int, int, str]] = []

    def refuse(node, why: str) -> None:
        found.append((node.lineno, getattr(node, "end_col_offset", None) or 0, f"line {node.lineno}: {why}"))

    def attribute_problem(attr: str, receiver: str | None = None) -> str | None:
        if attr in names:
            return f"attribute {attr!r} is not allowed"
        if receiver is not None and attr.startswith("_"):
            return f"private attribute {receiver}.{attr} is not allowed"
        if attr in module_names:
            return f"attribute {attr!r} is not allowed (it names a module outside the allowed imports)"
        return None

    modules, direct_calls = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(a.asname or a.name.split(".")[0] for a in node.names)
            for a in node.names:
                if a.name.split(".")[0] not in allowed:
                    refuse(node, f"import of {a.name!r} is not allowed")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                refuse(node, "relative import")
            elif (node.module or "").split(".")[0] not in allowed:
                refuse(node, f"import of {node.module or ''!r} is not allowed")
            else:  # `from m import name` reads an attribute of m
                for a in node.names:
                    if a.name != "*" and (why := attribute_problem(a.name, node.module)):
                        refuse(node, why)
        elif isinstance(node, ast.Call):
            func = node.func
            fname = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if fname in by_name:
                direct_calls.add(id(func))
                at = by_name[fname]
                if any(isinstance(a, ast.Starred) for a in node.args) or node.keywords and at is not None:
                    refuse(node, f"{fname}() with unpacked or keyword arguments is not allowed")
                    continue
                picked = node.args if at is None else node.args[at:at + 1]
                if not picked:
                    refuse(node, f"{fname}() without an attribute name is not allowed")
                for arg in picked:
                    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                        refuse(node, f"{fname}() with a name that is not a string literal is not allowed")
                        continue
                    receiver = None
                    if at == 1 and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in modules:
                        receiver = node.args[0].id
                    for part in arg.value.split(".") if fname == "attrgetter" else [arg.value]:
                        if why := attribute_problem(part, receiver):
                            refuse(node, f"{fname}(): {why}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id in names:
                refuse(node, f"use of {node.id!r} is not allowed")
            elif node.id in by_name and id(node) not in direct_calls:
                refuse(node, f"use of {node.id!r} other than a direct call with a literal name is not allowed")
        elif isinstance(node, ast.Attribute):
            receiver = node.value.id if isinstance(node.value, ast.Name) and node.value.id in modules else None
            if why := attribute_problem(node.attr, receiver):
                refuse(node, why)
            elif node.attr in by_name and id(node) not in direct_calls:
                refuse(node, f"use of {node.attr!r} other than a direct call with a literal name is not allowed")
    return list(dict.fromkeys(why for _, _, why in sorted(found)))


def _failure(result) -> str:
    return f"[{result.verdict}] {result.error}"


def check_environment(source: str, pool, cfg: CheckConfig | None = None, env_id: str = "candidate") -> list[GateResult]:
    """Run L1-L3 in order; later gates run only if earlier ones pass."""
    cfg = cfg or CheckConfig()
    problems = static_problems(source, cfg.extra_imports)
    if problems:
        return [GateResult("L1", False, problems[0], {"problems": problems})]
    try:
        info = pool.load(env_id, source)
    except Exception as e:  # the pool reports the sandbox verdict in the message
        return [GateResult("L1", False, f"does not load in the sandbox: {e}")]
    results = [GateResult("L1", True, f"loads as {info.get('name')!r}; imports allowed", {"info": info})]

    instances, l2 = [], None
    for d in cfg.difficulties:
        seeds = [1000 * d + i for i in range(cfg.seeds_per_difficulty)]
        try:
            first, again = pool.sample(env_id, seeds, d), pool.sample(env_id, seeds, d)
        except Exception as e:
            l2 = GateResult("L2", False, f"sample() failed at difficulty {d}: {e}")
            break
        if first != again:
            bad = next(a["seed"] for a, b in zip(first, again) if a != b)
            l2 = GateResult("L2", False, f"not deterministic: seed {bad} at difficulty {d} gave two different instances")
            break
        instances += first
    if l2 is None:
        scored = pool.score(env_id, [{"data": i["data"], "response": i["reference"]} for i in instances])
        wrong = [(i, r) for i, r in zip(instances, scored) if r.verdict != "ok" or r.score != 1.0]
        if wrong:
            inst, r = wrong[0]
            why = _failure(r) if r.verdict != "ok" else f"scored {r.score}"
            l2 = GateResult("L2", False, f"score(instance, reference) != 1 for seed {inst['seed']} at difficulty "
                                         f"{inst['difficulty']}: {why} ({len(wrong)}/{len(instances)} instances)")
        else:
            l2 = GateResult("L2", True, f"deterministic; reference scores 1 on {len(instances)} instances "
                                        f"at difficulties {cfg.difficulties}")
    results.append(l2)
    if not l2.passed:
        return results
    results.append(_gameability(instances, pool, cfg, env_id))
    return results


def _gameability(instances: list[dict], pool, cfg: CheckConfig, env_id: str) -> GateResult:
    rng = random.Random(0)
    probes = {"empty": "", "whitespace": "  \n"}
    probes.update({f"constant {a!r}": a for a in CONSTANT_ANSWERS})
    for k in range(cfg.random_answers):
        text = "".join(rng.choice(string.printable) for _ in range(rng.randint(1, 40)))
        probes[f"random #{k}"] = text
    means = {}
    for label, answer in probes.items():
        scored = pool.score(env_id, [{"data": i["data"], "response": answer} for i in instances])
        means[label] = sum(r.score for r in scored) / len(scored)
    worst = max(means, key=means.get)
    if means[worst] > cfg.bound:
        return GateResult("L3", False, f"gameable: the {worst} answer scores {means[worst]:.3f} on average "
                                       f"(bound {cfg.bound})", {"mean_scores": means})
    return GateResult("L3", True, f"{len(probes)} empty/constant/random answers score at most "
                                  f"{means[worst]:.3f} (bound {cfg.bound})", {"mean_scores": means})


def report_dict(path: str, results: list[GateResult]) -> dict:
    return {"path": path, "admitted": all(r.passed for r in results) and len(results) == 3,
            "gates": [asdict(r) for r in results]}
