"""EvoEnv self-play: the policy proposes environments, the gates admit some, the solver trains on the library.

Generator episode (one step):
    prompts  <- one or two library environments as examples per prompt
    proposals <- the policy's responses (n per prompt: a GRPO group)
    for each proposal, cheap gates first, each recorded with verdict and reason:
        parse    one Python source file in the response ("no code" otherwise)
        (duplicates inside the batch collapse onto the first)
        L1-L3    load in the sandbox, self-consistency, not gameable   (EnvExecutor actors)
        novelty  code and prompt similarity to every library environment
        L4       semantic self-review: the policy (or a judge) says yes/no
        L5       solver pass rate p in the band, searching the difficulty knob
    reward   0 if a gate failed (optional partial credit per gate passed), else 1 - p or min(p, 1 - p)
    admitted proposals join the library with lineage, gate reports and calibration

Solver episode: prompts sampled from the active library, weighted toward p near 0.5; usage recorded
per environment; environments above the band over a window retire (they stay in the library).

The executors' sandboxes hold exactly the active library: a candidate is loaded under its candidate id
only while its gates run (an admitted one is loaded again under its library name), and an environment
that retires is unloaded.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from cluster.episodes.selfplay import rejections
from cluster.rundir.checkpoint import read_driver_state
from cluster.config.errors import ConfigError
from cluster.config.seeds import (GATE_PROMPTS, GENERATOR_HELDOUT, calibration_instances, calibration_sampling,
                                   generator_order, review_instance)
from envs.gates import PROPOSAL_GATES as GATES, CheckConfig, GateResult
from envs.library import Library, LibraryEntry, LibraryError, mastered, sampling_weights
from envs.novelty import NoveltyConfig, check_novelty, collapse_duplicates
from envs.proposal import extract_source, generator_prompt, parse_yes_no, self_review_prompt
from envs.registry import seed_environments

LIBRARY_DIR = "library"
HELDOUT_STEP = -1  # the step a held-out measurement's proposals carry (no training step has it)
PROPOSALS_DIR = rejections.PROPOSALS_DIR


@dataclass
class Proposal:
    group: int  # the generator prompt it answers
    lineage: list[str]  # library environments shown in that prompt
    text: str
    source: str | None = None
    env_id: str = ""
    name: str = ""
    gates: list[dict] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)  # instance prompts (novelty, library)
    calibration: dict = field(default_factory=dict)
    reward: float = 0.0
    admitted_as: str | None = None

    @property
    def alive(self) -> bool:
        return all(g["passed"] for g in self.gates)

    def record(self, result: GateResult | dict) -> None:
        self.gates.append(asdict(result) if isinstance(result, GateResult) else result)


class EvoEnv:
    """Owns the library; judges proposals and picks solver instances. Holds no model itself: the solver
    role's policy runs the L5 calibration and the held-out measurement, the reviewer (a judge) answers
    L4, and sandboxed work goes through the fleet."""

    def __init__(self, cfg, run_dir: Path, fleet, solver, reviewer, resume_from: Path | None, shots=None):
        self.cfg, self.sp, self.fleet, self.solver, self.reviewer = cfg, cfg.selfplay, fleet, solver, reviewer
        self.shots = shots or (lambda env_id, difficulty: [])  # env.fewshot examples, as the solver sees them
        folder = run_dir / LIBRARY_DIR
        if resume_from is not None:  # the library as it was at the checkpoint
            self.library = Library.load(resume_from / LIBRARY_DIR).copy_to(folder)
        else:
            self.library = Library(folder, overwrite=True)
            if self.sp.seed_library:
                self.library.seed_from_builtin(seed_environments(self.sp.seed_set))
            if cfg.env.library:
                other = Path(cfg.env.library)
                try:
                    self.library.seed_from(other / LIBRARY_DIR if (other / LIBRARY_DIR).is_dir() else other)
                except LibraryError as e:
                    raise ConfigError(f"env.library={cfg.env.library}: {e}") from None
            if self.sp.seed_env and self.fleet.name not in self.library:  # the run's own environment
                self.library.add(LibraryEntry(name=self.fleet.name, source=self.fleet.sources[self.fleet.name],
                                              kind="task", origin=f"env.name={cfg.env.name}"))
        if not self.library.active():
            raise ConfigError("selfplay: the environment library is empty (selfplay.seed_library=false and no "
                              "env.library to start from)")
        for entry in self.library.active():
            self.fleet.load(entry.name, entry.source)
        if self.fleet.name not in {e.name for e in self.library.active()}:  # env.name is not played here
            self.fleet.unload(self.fleet.name)
        if resume_from is None and self.sp.calibrate_library:
            self.calibrate_library()
        self.proposals_dir = run_dir / PROPOSALS_DIR
        self.rejections = self._start_rejections(resume_from)
        self.retire_above = self.sp.retire_above if self.sp.retire_above is not None else self.sp.band[1]

    # -- solver ---------------------------------------------------------------------
    def sample(self, step: int, seeds: list[int]) -> list[dict]:
        """One instance per seed, each from an active environment drawn with weights toward p near 0.5.
        An environment whose sample() fails here is retired and its slots drawn again from the rest."""
        rng = random.Random(seeds[0] if seeds else step)
        out: list[dict | None] = [None] * len(seeds)
        while any(x is None for x in out):
            active = self.library.active()
            todo = [i for i, x in enumerate(out) if x is None]
            chosen = rng.choices(active, weights=sampling_weights(active, self.sp.retire_window), k=len(todo))
            by_env: dict[str, list[int]] = {}
            for i, entry in zip(todo, chosen):
                by_env.setdefault(entry.name, []).append(i)
            for name, idx in by_env.items():
                entry = self.library.get(name)
                difficulty = int(entry.calibration.get("difficulty", self.cfg.env.difficulty))
                try:
                    instances = self.fleet.sample([seeds[i] for i in idx], difficulty, env_id=name)
                except Exception as e:
                    if len(active) <= 1:
                        raise
                    print(f"evoforge: retiring {name!r}: sample() failed: {_short(e)}", flush=True)
                    self._retire(name, step)
                    continue
                for i, inst in zip(idx, instances):
                    out[i] = {**inst, "env": name, "difficulty": difficulty}
        return out

    def calibrate_library(self, log=print) -> list[dict]:
        """The L5 search for every active environment without a calibrated difficulty (the seeds, an imported
        library), read from the calibration cache when this model and environment version were measured
        before; recorded in the library. Where no difficulty is inside the band the nearest one is used
        (in_band false). Returns the records."""
        from cluster.episodes.selfplay.calibration import CalibrationCache, cache_key, nearest_to_band

        from trainers.models import cache_root

        cache = CalibrationCache(cache_root(self.cfg.model.cache_dir) / "calibration")
        sampling = {k: getattr(self.solver.sampling, k) for k in ("temperature", "top_p", "top_k", "min_p",
                                                                   "max_new_tokens", "stop")}
        search = {"difficulties": sorted(self.sp.difficulties), "band": list(self.sp.band),
                  "instances": self.sp.calibration_instances, "rollouts": self.sp.calibration_rollouts}
        todo = [e for e in self.library.active() if "difficulty" not in e.calibration]
        if todo:
            log(f"evoforge: calibrating the difficulty of {len(todo)} library environments (the L5 search; cached "
                f"per model and environment version in {cache.folder}) ...")
        records = []
        for entry in todo:
            shots = self.shots(entry.name, min(self.sp.difficulties))  # the prompts' solved examples, if any
            key = cache_key(entry.source, getattr(self.solver, "model_path", self.cfg.model.name),
                            self.cfg.model.chat_template, {**sampling, "shots": shots}, search)
            record, cached = cache.get(key), True
            if record is None:
                cached = False
                try:
                    result, cal = calibrate(lambda d: self.pass_rate(entry.name, d, 0), self.sp.difficulties,
                                            self.sp.band)
                except Exception as e:  # the environment fails at some difficulty: it keeps env.difficulty
                    log(f"evoforge: calibration of {entry.name} failed: {_short(e)}")
                    continue
                tried = cal["tried"]
                difficulty = cal.get("difficulty", nearest_to_band(tried, self.sp.band))
                record = {"difficulty": int(difficulty), "p": tried[difficulty], "in_band": result.passed,
                          "tried": {str(d): r for d, r in tried.items()}, **search}
                cache.put(key, record)
            self.library.set_calibration(entry.name, {**record, "cached": cached, "when": "start"})
            records.append({"env": entry.name, **record, "cached": cached})
        if todo:
            measured = sum(not r["cached"] for r in records)
            in_band = sum(bool(r["in_band"]) for r in records)
            log(f"evoforge: calibrated {len(records)} library environments ({measured} measured, "
                f"{len(records) - measured} from the cache): {in_band} with a pass rate inside "
                f"{list(self.sp.band)}; " + ", ".join(f"{r['env']} d{r['difficulty']} p={r['p']:.2f}" for r in records))
        return records

    def record(self, step: int, envs: list[str], rewards: list[float]) -> dict:
        """Usage per environment, retirement of mastered ones; returns metrics."""
        per_env: dict[str, list[float]] = {}
        for env, r in zip(envs, rewards):
            per_env.setdefault(env, []).append(r)
        metrics = {}
        for env, rs in per_env.items():
            p = sum(rs) / len(rs)
            self.library.record_usage(env, step, p, len(rs))
            metrics[f"solver/reward/{env}"] = p
        retired = 0
        for entry in self.library.active():
            if len(self.library.active()) <= self.sp.min_active:
                break
            if mastered(entry, self.retire_above, self.sp.retire_window, min_count=1):
                self._retire(entry.name, step)
                retired += 1
        return {**metrics, "selfplay/retired": retired, **self.library_metrics(), **self.fleet_metrics()}

    def _retire(self, name: str, step: int) -> None:
        """Out of the active set, and out of every executor's sandboxes (it stays in the library)."""
        self.library.retire(name, step)
        self.fleet.unload(name)

    def fleet_metrics(self) -> dict:
        """env/loaded: environments loaded in an executor's sandboxes (the most of any executor); equals
        selfplay/active unless something leaks."""
        counts = [c for c in self.fleet.loaded_counts() if c is not None]
        return {"env/loaded": max(counts)} if counts else {}

    def library_metrics(self) -> dict:
        entries = self.library.all()
        return {"selfplay/library_size": len(entries), "selfplay/active": sum(e.status == "active" for e in entries),
                "selfplay/retired_total": sum(e.status == "retired" for e in entries),
                "selfplay/generated": sum(e.kind == "generated" for e in entries)}

    # -- generator ------------------------------------------------------------------
    def generator_prompts(self, step: int, generator, count: int | None = None,
                          seed: int | None = None) -> tuple[list[str], list[list[str]]]:
        rng = random.Random(generator_order(self.cfg.seed, step) if seed is None else seed)
        # the run's own environment (kind task, e.g. a Reasoning Gym adapter importing its library) is not an
        # example of a file the generator could write; it is shown only when nothing else is active
        active = [e for e in self.library.active() if e.kind != "task"] or self.library.active()
        texts, lineages = [], []
        for _ in range(self.sp.proposals if count is None else count):
            examples = rng.sample(active, min(self.sp.examples, len(active)))
            topic = rng.choice(self.sp.topics) if self.sp.topics else None
            text, examples = self._fitting_prompt(examples, generator, topic)
            lineages.append([e.name for e in examples])
            texts.append(text)
        return texts, lineages

    def _fitting_prompt(self, examples: list, generator, topic: str | None = None) -> tuple[str, list]:
        """The generator prompt, shortened (fewer, then shorter examples) until prompt + response fit the
        generator's engine context (rollout.max_model_len)."""
        budget = generator.max_model_len - self.sp.max_new_tokens
        chars = self.sp.example_chars
        while True:
            text = generator_prompt([(e.name, e.source) for e in examples], max_chars=chars, topic=topic)
            tokens = len(generator.encode(text))
            if tokens <= budget or chars < 200:
                return text, examples
            if len(examples) > 1:
                examples = examples[:1]
            else:
                chars //= 2

    def generator_sampling(self, generator):
        return replace(generator.sampling, n=self.sp.samples_per_proposal, max_new_tokens=self.sp.max_new_tokens,
                       temperature=self.sp.temperature, cuts_fraction=0.0, stop=[])

    def judge_proposals(self, step: int, proposals: list[Proposal]) -> dict:
        """Run every gate in order (cheap first), admit survivors, set rewards; returns metrics.
        Every candidate id is unloaded at the end, whatever happened (admitted environments are loaded
        under their library name)."""
        try:
            self._judge(step, proposals)
        finally:
            self.fleet.unload([p.env_id for p in proposals if p.env_id])
        self._write_proposals(step, proposals)
        return self.generator_metrics(proposals)

    def encode_generator_prompt(self, generator, text: str) -> list[int]:
        """The generator prompt's ids, followed by selfplay.response_prefix (the start of the response, e.g. the
        opening of the file) when one is set: the model continues from there."""
        ids = generator.encode(text)
        if self.sp.response_prefix:
            ids = ids + list(generator.tokenizer(self.sp.response_prefix, add_special_tokens=False).input_ids)
        return ids

    def measure_generator(self, tag: str, generator, run_dir: Path) -> dict:
        """Gate pass rates of the generator on selfplay.generator_heldout fixed prompts (the same before and
        after: fixed examples, fixed sampling seed), every gate as in training but nothing admitted, rewarded
        or trained on; run_dir/generator_eval_<tag>.json."""
        n = self.sp.generator_heldout
        texts, lineages = self.generator_prompts(0, generator, count=n, seed=GENERATOR_HELDOUT)
        out = generator.generate([self.encode_generator_prompt(generator, t) for t in texts],
                                 self.generator_sampling(generator), seed=GENERATOR_HELDOUT)
        proposals = [Proposal(group=g, lineage=lineages[g], text=self.sp.response_prefix + s.text)
                     for g, group in enumerate(out["samples"]) for s in group]
        try:
            self._judge(HELDOUT_STEP, proposals, admit=False, tag=f"heldout_{tag}")
        finally:
            self.fleet.unload([p.env_id for p in proposals if p.env_id])
        counts = rejections.new_rejections()
        rejections.count_rejections(counts, [{"gates": p.gates} for p in proposals], HELDOUT_STEP)
        result = {"prompts": n, "proposals": len(proposals),
                  "gates": {g: sum(any(r["gate"] == g and r["passed"] for r in p.gates) for p in proposals)
                            for g in GATES},
                  "complete": sum(p.alive and len(p.gates) == len(GATES) for p in proposals),
                  "rejections": counts, "responses": [p.text[:2000] for p in proposals]}
        (Path(run_dir) / f"generator_eval_{tag}.json").write_text(json.dumps(result, indent=1))
        funnel = " -> ".join(f"{g} {result['gates'][g]}" for g in GATES)
        print(f"evoforge: generator held-out {tag}: {len(proposals)} proposals -> {funnel}", flush=True)
        return result

    def _judge(self, step: int, proposals: list[Proposal], admit: bool = True, tag: str = "") -> None:
        for p in proposals:
            p.source = extract_source(p.text)
            p.record(GateResult("parse", p.source is not None,
                                "one Python source file" if p.source is not None else "no code"))
        novelty_cfg = NoveltyConfig(code_threshold=self.sp.code_threshold, prompt_threshold=self.sp.prompt_threshold)
        parsed = [p for p in proposals if p.alive]
        kept, duplicate_of = collapse_duplicates([p.source for p in parsed], novelty_cfg)
        for j, first in duplicate_of.items():
            parsed[j].record(GateResult("novelty", False, f"duplicate of proposal #{proposals.index(parsed[first])} "
                                                          "in this batch"))
        survivors = [parsed[j] for j in kept]
        self._static_gates(step, survivors, tag or f"s{step}")
        self._novelty(novelty_cfg, [p for p in survivors if p.alive])
        self._review([p for p in survivors if p.alive], max(step, 0))
        self._calibrate([p for p in survivors if p.alive], max(step, 0))
        for p in proposals:
            self._reward(p)
            if admit and p.alive and len(p.gates) == len(GATES):
                self._admit(p, step)

    def _write_proposals(self, step: int, proposals: list[Proposal]) -> None:
        """Every proposal of the step, admitted or not, with its response and gate reports:
        run_dir/proposals/step_NNNNNN.jsonl; the run's rejection counts (proposals/rejections.json, which
        the report reads) take the step in, then only the newest `selfplay.keep_proposals` step files stay."""
        folder = self.proposals_dir
        folder.mkdir(exist_ok=True)
        records = [{"step": step, "group": p.group, "lineage": p.lineage, "response": p.text, "source": p.source,
                    "gates": p.gates, "calibration": p.calibration, "reward": p.reward,
                    "admitted_as": p.admitted_as} for p in proposals]
        with (folder / f"step_{step:06d}.jsonl").open("w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        rejections.count_rejections(self.rejections, records, step)
        rejections.write_rejections(folder, self.rejections)
        rejections.prune_proposals(folder, self.sp.keep_proposals)

    def _start_rejections(self, resume_from: Path | None) -> dict:
        """The run's rejection counts: empty, or as they were at the checkpoint (proposal files of the
        steps after it belong to the abandoned rest of the run and go, as metrics rows do)."""
        if resume_from is None:
            return rejections.new_rejections()
        first = int(read_driver_state(resume_from)["step"])
        saved = resume_from / PROPOSALS_DIR
        # a checkpoint written before the counts existed: count the run's files up to it
        counts = rejections.read_rejections(saved if (saved / rejections.REJECTIONS_FILE).is_file() else self.proposals_dir,
                                        before=first)
        for path in rejections.proposal_files(self.proposals_dir):
            if rejections.file_step(path) >= first:
                path.unlink()
        if self.proposals_dir.is_dir():
            rejections.write_rejections(self.proposals_dir, counts)
        return counts

    def _static_gates(self, step: int, proposals: list[Proposal], tag: str) -> None:
        # generated code gets the standard allowed imports only, whatever trusted libraries the sandbox
        # loads for other environments (env.sandbox.extra_imports)
        check = CheckConfig(seeds_per_difficulty=self.sp.gate_seeds, difficulties=list(self.sp.gate_difficulties),
                            bound=self.sp.gate_bound, extra_imports=[])
        for j, p in enumerate(proposals):
            p.env_id = f"candidate_{tag}_{j}"
        results = self.fleet.check([(p.env_id, p.source) for p in proposals], check)
        for p, gates in zip(proposals, results):
            for g in gates:
                p.record(g)
            if p.alive:  # loaded on every executor for the gates that sample and score it
                info = gates[0].get("details", {}).get("info", {})
                p.name = str(info.get("name") or "env")
                try:
                    self.fleet.load(p.env_id, p.source)
                    inst = self.fleet.sample(GATE_PROMPTS, self.sp.gate_difficulties[0], env_id=p.env_id)
                    p.prompts = [i["prompt"] for i in inst]
                except Exception as e:  # environment code failing now (e.g. a timeout) fails the proposal
                    p.record(GateResult("novelty", False, f"could not sample instance prompts: {_short(e)}"))

    def _novelty(self, cfg: NoveltyConfig, proposals: list[Proposal]) -> None:
        library = self.library.all()
        for p in proposals:
            p.record(check_novelty(p.source, p.prompts, library, cfg))

    def _review(self, proposals: list[Proposal], step: int) -> None:
        """L4: does the prompt ask exactly what the oracle computes? A strict yes/no."""
        if not proposals:
            return
        d = self.sp.gate_difficulties[0]
        questions, asked = [], []
        for p in proposals:
            try:
                inst = self.fleet.sample([review_instance(step)], d, env_id=p.env_id)[0]
            except Exception as e:
                p.record(GateResult("L4", False, f"could not sample an instance to review: {_short(e)}"))
                continue
            asked.append(p)
            questions.append(self_review_prompt(p.source, inst["prompt"], inst["reference"],
                                                max_chars=self.sp.example_chars * 2))
        proposals = asked
        answers = [r["text"] for r in self.reviewer.judge([{"question": q} for q in questions])] if questions else []
        for p, answer in zip(proposals, answers):
            verdict = parse_yes_no(answer)
            reason = {True: "the reviewer answered yes", False: "the reviewer answered no",
                      None: f"no strict yes/no in the review: {answer.strip()[:80]!r}"}[verdict]
            p.record(GateResult("L4", verdict is True, f"{reason} ({self.sp.review})", {"answer": answer[:500]}))

    def _calibrate(self, proposals: list[Proposal], step: int) -> None:
        """L5: search the difficulty knob for a solver pass rate inside the band."""
        for p in proposals:
            try:
                result, p.calibration = calibrate(lambda d: self.pass_rate(p.env_id, d, step),
                                                  self.sp.difficulties, self.sp.band)
            except Exception as e:  # sample() or score() of the environment failed at a difficulty
                p.record(GateResult("L5", False, f"calibration failed: {_short(e)}"))
                continue
            p.calibration.update(instances=self.sp.calibration_instances, rollouts=self.sp.calibration_rollouts)
            p.record(result)

    def pass_rate(self, env_id: str, difficulty: int, step: int) -> float:
        """Mean solver score over N instances x n rollouts at one difficulty."""
        seeds = calibration_instances(step, difficulty, self.sp.calibration_instances)
        instances = self.fleet.sample(seeds, difficulty, env_id=env_id)
        shots = self.shots(env_id, difficulty)
        prompts = [self.solver.encode(i["prompt"], shots) for i in instances]
        sampling = replace(self.solver.sampling, n=self.sp.calibration_rollouts, cuts_fraction=0.0)
        out = self.solver.generate(prompts, sampling, seed=calibration_sampling(self.cfg.seed, step, difficulty))
        items = [{"data": inst["data"], "response": s.text} for inst, g in zip(instances, out["samples"]) for s in g]
        scores, _ = self.fleet.score(items, env_id=env_id)
        return sum(scores) / max(len(scores), 1)

    def _reward(self, p: Proposal) -> None:
        complete = p.alive and len(p.gates) == len(GATES)
        p.reward = generator_reward(p.calibration.get("p") if complete else None, self.sp.reward,
                                    self.sp.partial_credit, sum(g["passed"] for g in p.gates))

    def _admit(self, p: Proposal, step: int) -> None:
        entry = self.library.add(LibraryEntry(
            name=p.name, source=p.source, kind="generated", lineage=p.lineage, gates=p.gates,
            calibration=p.calibration, admitted_step=step, prompts=p.prompts))
        p.admitted_as = entry.name
        self.fleet.load(entry.name, entry.source)

    def generator_metrics(self, proposals: list[Proposal]) -> dict:
        m = {"selfplay/proposals": len(proposals),
             "selfplay/admitted": sum(p.admitted_as is not None for p in proposals),
             "selfplay/generator_reward": sum(p.reward for p in proposals) / max(len(proposals), 1)}
        for gate in GATES:
            m[f"selfplay/gate/{gate}/passed"] = sum(
                any(g["gate"] == gate and g["passed"] for g in p.gates) for p in proposals)
        return {**m, **self.library_metrics(), **self.fleet_metrics()}

    def save(self, folder: Path) -> None:
        """The library and the run's rejection counts so far (the proposal files stay in run_dir)."""
        self.library.copy_to(folder / LIBRARY_DIR)
        rejections.write_rejections(folder / PROPOSALS_DIR, self.rejections)


def calibrate(rate_at, difficulties, band) -> tuple[GateResult, dict]:
    """L5 search: start at the easiest level; too easy (p above the band) -> harder, too hard -> easier,
    never revisiting a level. Returns the gate result and the calibration record."""
    low, high = band
    levels = sorted(difficulties)
    tried: dict[int, float] = {}
    i = 0
    while True:
        d = levels[i]
        rate = tried[d] = rate_at(d)
        if low <= rate <= high:
            return (GateResult("L5", True, f"pass rate {rate:.2f} at difficulty {d} is inside [{low}, {high}]",
                               {"tried": tried}), {"difficulty": d, "p": rate, "tried": tried})
        move = 1 if rate > high else -1
        if 0 <= i + move < len(levels) and levels[i + move] not in tried:
            i += move
            continue
        why = "too easy" if rate > high else "too hard"
        return (GateResult("L5", False, f"{why}: pass rates {_fmt(tried)} by difficulty, none inside "
                                        f"[{low}, {high}]", {"tried": tried}), {"tried": tried})


def generator_reward(p: float | None, kind: str, partial_credit: float, gates_passed: int) -> float:
    """0 (or partial credit per gate passed) unless every gate passed; then 1 - p or min(p, 1 - p)."""
    if p is None:
        return partial_credit * gates_passed
    return 1.0 - p if kind == "learnability" else min(p, 1.0 - p)


def _short(error: Exception) -> str:
    """The last line of an error (a Ray task error carries the remote traceback before it)."""
    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def _fmt(tried: dict[int, float]) -> str:
    return ", ".join(f"{d}: {r:.2f}" for d, r in sorted(tried.items()))
