"""Judges shared by episodes: a pool of judge actors per configured judge (judges.<name>).

`JudgePool(name, jc, strategy, model_cfg)` reserves its own placement group (one
bundle per worker), starts `jc.num_workers` actors of `jc.kind` (actors.judge)
and splits each `judge(requests)` call over them. Requests and results:

  generative  {template fields, e.g. "question"} -> {"text": raw answer, "value": parsed or None, "parsed": bool}
  scalar      {"prompt", "response"}           -> {"value": float}
  process     {"prompt", "response"}           -> {"steps": [str], "step_scores": [float in 0..1],
                                                   "spans": [[start, end]], "value": lowest step score}

Failures: a worker that dies mid-call is replaced by a new actor on the same
bundle and its requests re-issued; a part of a call that takes longer than
`jc.timeout_s` counts as a failure too (its worker is killed, replaced, the part
re-issued); an exception raised by the actor counts as a failure and the part is
re-issued on the same worker. After `jc.max_failures` failed attempts of one part
the call raises `JudgeFailed` naming the judge and the last error: a judge never
answers with a default. An unparseable generative answer is not a failure: it is
returned with `parsed=False` and `value=None`, and counted.

`Judge` is the interface episodes use; other judges (policy-backed, scripted)
follow it without a pool.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import ray

from actors.judge import ACTORS, KINDS, PARSE_MODES, fill_template, parse_verdict, reward_model_problem, template_fields
from cluster.runtime.placement import bundle, on_bundle, release, reserve
from cluster.runtime.replace import DEAD, Replacements, kill
from trainers.models import ModelError, cache_root, build_tiny_reward_model, prepare_model

START_TIMEOUT_S = 900.0  # a worker (re)start: model load, vLLM engine start; apart from jc.timeout_s


class JudgeFailed(RuntimeError):
    pass


@runtime_checkable
class Judge(Protocol):
    """What an episode may call. `kind` tells the result shape (see the module docstring)."""
    name: str
    kind: str  # generative | scalar | process

    def judge(self, requests: list[dict]) -> list[dict]: ...

    def metrics(self) -> dict[str, float]: ...

    def close(self) -> None: ...


def verdict_result(text: str, parse: str) -> dict:
    """A generative judge's result for one raw answer: {"text", "value", "parsed"}."""
    value = parse_verdict(text, parse)
    return {"text": text, "value": value, "parsed": value is not None}


def with_rubric_defaults(jc):
    """A `rubric` judge is a generative one with DeltaRubric's planner and verifier templates (unless given) and
    the preference parser: requests carry question, a, b."""
    if jc.kind != "rubric":
        return jc
    from cluster.config.schema import JudgeConfig
    from envs.rubric import VERIFY_TEMPLATE, plan_template

    default = JudgeConfig()
    return replace(jc, kind="generative", parse="preference",
                   template=VERIFY_TEMPLATE if jc.template == default.template else jc.template,
                   plan_template=jc.plan_template or plan_template())


def judge_config_problems(name: str, jc) -> list[str]:
    """Everything wrong with judges.<name>, as messages naming the key; empty when it can start."""
    p, key = [], f"judges.{name}"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name or ""):
        p.append(f"judge name {name!r}: use letters, digits, '_', '-' or '.'")
    if jc.kind not in (*KINDS, "rubric"):
        p.append(f"{key}.kind={jc.kind!r}: use {', '.join(KINDS)} or rubric")
    jc = with_rubric_defaults(jc)
    if jc.kind == "generative" and jc.plan_template:
        try:
            template_fields(jc.plan_template)
            if "checklist" not in template_fields(jc.template):
                p.append(f"{key}.template: a judge with a plan_template reads the checklist: add {{checklist}}")
        except ValueError as e:
            p.append(f"{key}.plan_template: {e}")
        if jc.plan_max_new_tokens < 1:
            p.append(f"{key}.plan_max_new_tokens={jc.plan_max_new_tokens}: must be at least 1")
    if jc.kind == "generative":
        if jc.parse not in PARSE_MODES:
            p.append(f"{key}.parse={jc.parse!r}: use {', '.join(PARSE_MODES)}")
        if jc.backend not in ("hf", "vllm"):
            p.append(f"{key}.backend={jc.backend!r}: use hf or vllm")
        try:
            template_fields(jc.template)
        except ValueError as e:
            p.append(f"{key}.template: {e}")
        if jc.max_new_tokens < 1:
            p.append(f"{key}.max_new_tokens={jc.max_new_tokens}: must be at least 1")
    if jc.kind == "process" and not jc.step_separator:
        p.append(f"{key}.step_separator is empty: steps need a separator (e.g. '\\n')")
    if jc.num_workers < 1:
        p.append(f"{key}.num_workers={jc.num_workers}: must be at least 1")
    if jc.cpus_per_worker < 0 or jc.gpus_per_worker < 0:
        p.append(f"{key}: cpus_per_worker and gpus_per_worker must not be negative")
    if not jc.timeout_s > 0:
        p.append(f"{key}.timeout_s={jc.timeout_s}: must be positive")
    if jc.max_failures < 1:
        p.append(f"{key}.max_failures={jc.max_failures}: must be at least 1")
    return p


def prepare_judge_model(jc, model_cfg) -> str:
    """A local folder for the judge's model. Generative: as model.name (prepare_model). Scalar/process:
    "tiny" is a seeded random sequence-classification model of model_cfg's tiny shape, built once into
    the cache; anything else as model.name (a reward-model folder, or a hub id)."""
    if jc.kind in ("scalar", "process") and jc.model == "tiny":
        m = model_cfg
        folder = cache_root(m.cache_dir) / (f"tiny-rm-{m.tiny_arch}-h{m.tiny_hidden}-l{m.tiny_layers}-a{m.tiny_heads}"
                                             f"-kv{m.tiny_kv_heads}-i{m.tiny_intermediate}-s{m.tiny_seed}")
        if not (folder / "config.json").exists():
            build_tiny_reward_model(folder, m.tiny_arch, m.tiny_hidden, m.tiny_layers, m.tiny_heads,
                                    m.tiny_kv_heads, m.tiny_intermediate, m.tiny_seed)
        return str(folder)
    path = prepare_model(replace(model_cfg, name=jc.model, dtype=jc.dtype))
    config = Path(path) / "config.json"
    if jc.kind in ("scalar", "process") and config.exists():  # a local folder: refuse it before any actor starts
        data = json.loads(config.read_text())
        labels = len(data["id2label"]) if data.get("id2label") else data.get("num_labels", 2)  # transformers' default
        problem = reward_model_problem(data.get("architectures"), labels)
        if problem:
            raise ModelError(f"{path}: {problem}")
    return path


def _one_line(e: BaseException, limit: int = 300) -> str:
    """An error as one line: the actor's own exception, not Ray's wrapping, traceback or colours."""
    cause = getattr(e, "cause", None) if isinstance(e, ray.exceptions.RayTaskError) else None
    err = cause if isinstance(cause, BaseException) else e
    lines = [x.strip() for x in re.sub(r"\x1b\[[0-9;]*m", "", str(err)).splitlines() if x.strip()]
    if isinstance(err, ray.exceptions.RayActorError) and getattr(err, "actor_init_failed", False) and lines:
        text = f"{type(err).__name__} in __init__: {lines[-1]}"  # the creation task's exception line
    else:
        text = f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


class JudgePool:
    def __init__(self, name: str, jc, strategy: str, model_cfg, start_timeout_s: float = START_TIMEOUT_S):
        problems = judge_config_problems(name, jc)
        if problems:
            raise ValueError("; ".join(problems))
        jc = with_rubric_defaults(jc)
        self.name, self.jc, self.kind = name, jc, jc.kind
        self.start_timeout_s = start_timeout_s
        self.counts = dict.fromkeys(("calls", "requests", "failures", "timeouts", "unparseable"), 0)
        self.pg, self.workers = None, []
        self.replacements = Replacements(self._start)
        try:
            self.path = prepare_judge_model(jc, model_cfg)
        except Exception as e:
            raise JudgeFailed(f"judge '{name}': cannot prepare model {jc.model!r} ({_one_line(e)})") from e
        self.pg = reserve(f"judge-{name}", [bundle(jc.cpus_per_worker, jc.gpus_per_worker)] * jc.num_workers,
                          strategy)
        self.workers = [None] * jc.num_workers
        try:
            self.workers = [self._start(i) for i in range(jc.num_workers)]
            errors = self._wait_ready(list(range(jc.num_workers)))
        except Exception as e:
            errors = {0: e}
        if errors:
            self.close()
            e = next(iter(errors.values()))
            raise JudgeFailed(f"judge '{name}': its workers did not start ({_one_line(e)})") from e

    # -- workers -------------------------------------------------------------------
    def _start(self, i: int):
        jc = self.jc
        opts = dict(**on_bundle(self.pg, i), max_restarts=0, max_concurrency=1)
        cls = ACTORS[jc.kind]
        if jc.kind == "generative":
            return cls.options(**opts).remote(i, self.path, jc.backend, jc.dtype, jc.threads, jc.template,
                                              jc.chat_template, jc.max_new_tokens,
                                              plan_template=jc.plan_template,
                                              plan_max_new_tokens=jc.plan_max_new_tokens)
        extra = {"step_separator": jc.step_separator} if jc.kind == "process" else {}
        return cls.options(**opts).remote(i, self.path, jc.dtype, jc.threads, jc.chat_template, **extra)

    def _wait_ready(self, slots: list[int]) -> dict[int, Exception]:
        """Wait (together) until the workers in `slots` answer; the error of each one that did not."""
        refs = {self.workers[i].ready.remote(): i for i in slots}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=self.start_timeout_s) if refs else ([], [])
        errors: dict[int, Exception] = {}
        for ref, i in refs.items():
            try:
                if ref not in ready:
                    raise TimeoutError(f"not ready within {self.start_timeout_s:g}s")
                ray.get(ref)
            except Exception as e:
                errors[i] = e
        return errors

    def _kill(self, i: int) -> None:
        kill(self.workers[i])
        self.workers[i] = None  # replaced when next used

    def _replace(self, slots: list[int]) -> dict[int, Exception]:
        """A live worker in each of `slots`: new actors on the same bundles for those killed or dead, started
        together; the error of each slot that could not be filled (its new actor is killed again)."""
        new, errors = [i for i in slots if self.workers[i] is None], {}
        for i in new:
            try:
                self.replacements.replace(self.workers, i)
            except Exception as e:
                errors[i] = e
        errors |= self._wait_ready([i for i in new if i not in errors])
        for i in errors:
            self._kill(i)
        return errors

    # -- calls ---------------------------------------------------------------------
    def _check(self, requests: list[dict]) -> None:
        """Malformed requests are the caller's bug: a ValueError now, never retried."""
        for n, r in enumerate(requests):
            if not isinstance(r, dict):
                raise TypeError(f"judge '{self.name}': request {n} is a {type(r).__name__}, not a dict")
            if self.kind == "generative":
                try:
                    if self.jc.plan_template:
                        fill_template(self.jc.plan_template, r)
                        r = {**r, "checklist": ""}
                    fill_template(self.jc.template, r)
                except (ValueError, KeyError, IndexError, AttributeError) as e:
                    raise ValueError(f"judge '{self.name}': request {n}: {e}") from e
            elif not (isinstance(r.get("prompt"), str) and isinstance(r.get("response"), str)):
                raise ValueError(f"judge '{self.name}': request {n} needs string 'prompt' and 'response' fields")

    def judge(self, requests: list[dict]) -> list[dict]:
        if self.pg is None:
            raise RuntimeError(f"judge '{self.name}' is closed")
        requests = list(requests)
        self._check(requests)
        self.counts["calls"] += 1
        self.counts["requests"] += len(requests)
        if not requests:
            return []
        k = min(len(self.workers), len(requests))
        chunks = [requests[i * len(requests) // k:(i + 1) * len(requests) // k] for i in range(k)]
        answers: list = [None] * k
        failures = [0] * k
        inflight: dict = {}  # ref -> (part, start time)
        todo = list(range(k))

        def failed(part: int, error: BaseException) -> None:
            self.counts["failures"] += 1
            failures[part] += 1
            if failures[part] >= self.jc.max_failures:
                raise JudgeFailed(f"judge '{self.name}': {failures[part]} failed attempts of one call "
                                  f"({len(chunks[part])} of {len(requests)} requests, worker {part}) "
                                  f"(last error: {_one_line(error)})") from error
            todo.append(part)

        while todo or inflight:
            issue, todo[:] = list(todo), []
            errors = self._replace(issue)
            for part in issue:
                if part in errors:
                    failed(part, errors[part])
                else:
                    inflight[self.workers[part].judge.remote(chunks[part])] = (part, time.monotonic())
            if not inflight:
                continue
            refs = list(inflight)
            first_deadline = min(start for _, start in inflight.values()) + self.jc.timeout_s
            ray.wait(refs, num_returns=1, timeout=max(0.0, first_deadline - time.monotonic()))
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            now = time.monotonic()
            for ref in done:
                part, _ = inflight.pop(ref)
                try:
                    out = ray.get(ref)
                    if not isinstance(out, list) or len(out) != len(chunks[part]):
                        raise RuntimeError(f"worker answered {len(out) if isinstance(out, list) else out!r} "
                                           f"results for {len(chunks[part])} requests")
                    answers[part] = out
                except Exception as e:
                    if isinstance(e, DEAD) or not isinstance(e, ray.exceptions.RayTaskError):
                        self._kill(part)  # dead or unknown: a new worker takes the part
                    failed(part, e)
            for ref, (part, start) in list(inflight.items()):
                if now - start >= self.jc.timeout_s:
                    del inflight[ref]
                    self.counts["timeouts"] += 1
                    self._kill(part)  # ends the hung call too
                    failed(part, TimeoutError(f"no answer within timeout_s={self.jc.timeout_s:g}"))
        results = [r for part in answers for r in part]
        if self.kind == "generative":
            results = [verdict_result(r["text"], self.jc.parse) | ({"checklist": r["checklist"]} if "checklist" in r
                                                                   else {}) for r in results]
            self.counts["unparseable"] += sum(not r["parsed"] for r in results)
        return results

    def metrics(self) -> dict[str, float]:
        counts = {**self.counts, "restarts": self.replacements.count}
        return {f"judge/{self.name}/{k}": v for k, v in counts.items()}

    def close(self) -> None:
        for i in range(len(self.workers)):
            self._kill(i)
        if self.pg is not None:
            release(self.pg)
            self.pg = None


def build_judges(judges: dict, strategy: str, model_cfg) -> dict[str, JudgePool]:
    """One JudgePool per judges.<name>; if one cannot start, the ones already started are closed."""
    pools: dict[str, JudgePool] = {}
    try:
        for name, jc in (judges or {}).items():
            pools[name] = JudgePool(name, jc, strategy, model_cfg)
    except BaseException:
        close_judges(pools)
        raise
    return pools


def close_judges(judges: dict) -> None:
    for j in judges.values():
        j.close()
