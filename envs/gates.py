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
from dataclasses import asdict, dataclass, field

from envs.sandbox.limits import ALLOWED_IMPORTS

ESCAPE_HATCHES = {"__import__", "__subclasses__", "__globals__", "__builtins__", "__code__", "__closure__",
                  "__getattribute__", "eval", "exec", "compile", "open", "globals", "breakpoint", "input", "vars"}
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


def static_problems(source: str, extra_imports=()) -> list[str]:
    """Reasons the source is refused before it runs (empty list: none)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [f"syntax error at line {e.lineno}: {e.msg}"]
    allowed = set(ALLOWED_IMPORTS) | set(extra_imports)
    modules, problems = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
            modules.update(a.asname or a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
            if node.level:
                problems.append(f"line {node.lineno}: relative import")
        else:
            names = []
        problems += [f"line {node.lineno}: import of {n!r} is not allowed" for n in names
                     if n.split(".")[0] not in allowed]
        if isinstance(node, ast.Name) and node.id in ESCAPE_HATCHES:
            problems.append(f"line {node.lineno}: use of {node.id!r} is not allowed")
        if isinstance(node, ast.Attribute) and node.attr in ESCAPE_HATCHES:
            problems.append(f"line {node.lineno}: attribute {node.attr!r} is not allowed")
    for node in ast.walk(tree):  # private attributes of imported modules (e.g. random._os)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules \
                and node.attr.startswith("_"):
            problems.append(f"line {node.lineno}: private attribute {node.value.id}.{node.attr} is not allowed")
    return problems


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
