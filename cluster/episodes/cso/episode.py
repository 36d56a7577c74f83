"""`cso`: critical-step optimisation. The policy's failures become preference pairs at the step that went wrong.

    samples   <- the solver's policy on verifiable tasks, n per prompt; failed <- those scoring below 1
    steps     <- each failed response's ids cut where the separator ends (trainers/cso.split_steps)
    scores    <- the process reward of every step: prm=mc   the fraction of mc_samples policy continuations from
                                                            the step that succeed (the last step: the outcome)
                                                  prm=trained  a sequence classifier trained on those values
                                                            (the first prm_warmup_steps runs score by MC)
                                                  prm=judge    a process judge of the run (judges.<prm_judge>)
    critical  <- the `candidates` lowest-scored steps of each failed trajectory
    alternatives <- the expert at each critical step: `alternatives` proposals of one step from the same prefix
                    (expert=policy: the expert role's policy at expert_temperature; expert=oracle: the task's
                    reference step at that index, a scripted expert)
    branches  <- the policy continues from prefix + alternative, branch_samples times (one prefix, many branches:
                 vLLM's prefix cache serves the shared ids)
    pairs     <- (chosen = alternative, rejected = original step) when a continuation succeeds and the PRM scores
                 chosen >= chosen_min and rejected <= rejected_max; DPO on the pairs, loss on the two steps only

Every generated sequence counts against rollout_budget (sequences per step; failed trajectories are expanded in
order while their whole cost fits), so the baselines (the `task` kind with grpo or dpo) can be given the same
budget. Each failed trajectory's record -> run_dir/episodes/cso.jsonl.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from cluster.config.seeds import phased_sampling
from cluster.episodes.protocol import Episode, EpisodeResult, RoleUpdate
from cluster.episodes.common import reward_metrics, to_trajectories
from trainers.cso import critical_candidates, keep_pair, monte_carlo_value, split_steps, step_pair


@dataclass
class Failed:
    """A failed trajectory being expanded: its prompt, sampled ids, steps and their scores."""
    group: int
    instance: dict
    prompt_ids: list[int]
    ids: list[int]
    steps: list[tuple[int, int]]
    cost: int = 0  # sequences its expansion generates
    scores: list[float] = field(default_factory=list)
    candidates: list[int] = field(default_factory=list)
    alternatives: list[dict] = field(default_factory=list)  # {"step", "ids", "text", "outcomes", "score", "kept"}


def continuation_texts(tokenizer, contexts: list[list[int]], samples: list[list]) -> list[list[str]]:
    """The whole response each continuation completes: the context's response ids + the continuation's, decoded."""
    return [[tokenizer.decode(c + s.response_ids, skip_special_tokens=True) for s in group]
            for c, group in zip(contexts, samples)]


class CSOEpisode(Episode):
    kind, roles, label = "cso", ("solver", "expert"), "solver"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.cc = ctx.cfg.episodes.cso
        self.sep_ids: list[int] | None = None
        self.prm_examples: list[dict] = []  # MC-valued steps: {"prompt", "prefix", "value", "heldout"}
        self.mc_runs = 0  # CSO runs scored by Monte-Carlo values (prm=trained: the warm-up)
        self.prm = None  # prm=trained: the ProcessRewardTrainer once trained
        self.prm_agreement: dict = {}
        if self.cc.prm == "judge" and self.cc.prm_judge not in ctx.judges:
            raise ValueError(f"episodes.cso.prm_judge={self.cc.prm_judge!r}: no such judge (judges: "
                             f"{', '.join(ctx.judges) or 'none'})")

    # -- the step ----------------------------------------------------------------------------------------------
    def run(self, step: int, ctx) -> EpisodeResult:
        policy, cc, cfg = ctx.policy("solver"), self.cc, ctx.cfg
        tok = policy.tokenizer
        seed = phased_sampling(cfg.seed, step)
        t0 = time.perf_counter()
        budget = cc.rollout_budget or 10 ** 9
        seeds = ctx.data_seeds(step)
        instances = ctx.env.sample(seeds[:cc.mine_prompts or len(seeds)], cfg.env.difficulty)
        prompts = [policy.encode(i["prompt"], ctx.shots(i.get("env"), cfg.env.difficulty)) for i in instances]
        sampling = policy.sampling
        out = policy.generate(prompts, sampling, seed=seed)
        counts = {"mine": sum(len(g) for g in out["samples"]), "mc": 0, "expert": 0, "branch": 0}
        tokens = {"mine": out["tokens"], "mc": 0, "expert": 0, "branch": 0}
        rewards = self._score([(inst, s.text) for inst, g in zip(instances, out["samples"]) for s in g])
        mined = to_trajectories(prompts, out["samples"], out["version"], "solver", self.kind, rewards)
        metrics = reward_metrics(mined)  # the policy's own success on the step's tasks

        use_mc = cc.prm == "mc" or (cc.prm == "trained" and self.prm is None)
        failed, spent = [], counts["mine"]
        for t in mined:
            if t.reward >= 1.0 or len(failed) >= cc.max_failed:
                continue
            steps = split_steps(t.response_ids, tok, cc.separator)
            if not steps:  # an empty response: no step to replace
                continue
            f = Failed(t.group_id, instances[t.group_id], t.prompt_ids, list(t.response_ids), steps)
            f.cost = self._cost(len(steps), use_mc)
            if spent + f.cost > budget:
                continue
            spent += f.cost
            failed.append(f)
        t1 = time.perf_counter()

        # process rewards of every step, then the critical candidates
        if use_mc:
            self._mc_scores(policy, failed, seed + 1, counts, tokens)
        else:
            self._prm_scores(policy, failed)
        for f in failed:
            f.candidates = critical_candidates(f.scores, cc.candidates)
        t2 = time.perf_counter()

        # the expert's alternatives at each candidate, the policy's branches from each, the pair filter
        self._alternatives(ctx, failed, seed + 2, counts, tokens)
        self._branches(policy, failed, use_mc, seed + 3, counts, tokens)
        pairs = []
        for f in failed:
            for a in f.alternatives:
                rejected = f.scores[a["step"]]
                a["kept"] = keep_pair(a["score"], rejected, a["succeeded"], cc.chosen_min, cc.rejected_max)
                if a["kept"]:
                    s, e = f.steps[a["step"]]
                    pairs += step_pair(f.prompt_ids, f.ids[:s], a["ids"], f.ids[s:e], len(pairs) // 2,
                                       continuation=a["continuation"])
        t3 = time.perf_counter()
        if use_mc:
            self.mc_runs += 1
            if cc.prm == "trained":
                self._record_values(failed, policy)
                if self.mc_runs >= cc.prm_warmup_steps:
                    metrics.update(self._train_prm(policy))
        metrics.update(self._metrics(failed, pairs, counts, tokens, use_mc))
        metrics.update({"timing/mine": t1 - t0, "timing/prm": t2 - t1, "timing/branch": t3 - t2})
        self.record(step, [self._record(f, tok) for f in failed])
        updates = {"solver": RoleUpdate(pairs, "dpo", max(sampling.temperature, 1e-6))} if pairs else {}
        return EpisodeResult(updates, metrics)

    def _cost(self, steps: int, use_mc: bool) -> int:
        """Sequences one failed trajectory's expansion generates: MC continuations from every step but the last
        (whose value is the outcome), the expert's proposals and the policy's branches."""
        cc = self.cc
        critical = min(cc.candidates, steps)
        mc = (steps - 1) * cc.mc_samples if use_mc else 0
        # the scripted expert proposes its one reference step per site and generates nothing
        proposals = cc.alternatives if cc.expert == "policy" else 1
        expert = critical * proposals if cc.expert == "policy" else 0
        return mc + expert + critical * proposals * cc.branch_samples

    def _score(self, pairs: list[tuple[dict, str]]) -> list[float]:
        if not pairs:
            return []
        rewards, _ = self.ctx.env.score([{"data": i["data"], "response": r, "env": i.get("env")} for i, r in pairs])
        return rewards

    def _continue(self, policy, contexts: list[tuple[Failed, list[int]]], n: int, seed: int, counts: dict,
                  tokens: dict, stage: str) -> list[list[tuple[list[int], float]]]:
        """n policy continuations from each (trajectory, response ids so far): per context, each continuation's
        ids and outcome."""
        if not contexts:
            return []
        sampling = replace(policy.sampling, n=n, cuts_fraction=0.0)
        out = policy.generate([f.prompt_ids + ids for f, ids in contexts], sampling, seed=seed)
        counts[stage] += n * len(contexts)
        tokens[stage] += out["tokens"]
        texts = continuation_texts(policy.tokenizer, [ids for _, ids in contexts], out["samples"])
        rewards = iter(self._score([(f.instance, t) for (f, _), group in zip(contexts, texts) for t in group]))
        return [[(s.response_ids, next(rewards)) for s in group] for group in out["samples"]]

    # -- process rewards ------------------------------------------------------------------------------------------
    def _mc_scores(self, policy, failed: list[Failed], seed: int, counts: dict, tokens: dict) -> None:
        """Every step's Monte-Carlo value; the last step's value is the trajectory's outcome (0: it failed)."""
        contexts = [(f, f.ids[:e]) for f in failed for _, e in f.steps[:-1]]
        results = iter(self._continue(policy, contexts, self.cc.mc_samples, seed, counts, tokens, "mc"))
        for f in failed:
            f.scores = [monte_carlo_value([r for _, r in next(results)]) for _ in f.steps[:-1]] + [0.0]

    def _prefix_texts(self, tokenizer, f: Failed, ends: list[int]) -> list[str]:
        from trainers.prm import step_prefix_text

        return [step_prefix_text(tokenizer.decode(f.ids[:e], skip_special_tokens=True), self.cc.separator)
                for e in ends]

    def _prm_scores(self, policy, failed: list[Failed]) -> None:
        """Every step's score from the trained PRM or the process judge, on the prefix ending at the step."""
        tok = policy.tokenizer
        for f in failed:
            f.scores = self._prm(tok, f, [e for _, e in f.steps])

    def _prm(self, tokenizer, f: Failed, ends: list[int], extra: list[list[int]] | None = None) -> list[float]:
        """PRM scores of prefixes of f: the response's first `end` ids, or (extra) given response ids."""
        prefixes = (self._prefix_texts(tokenizer, f, ends) if extra is None else
                    [self._prefix_text(tokenizer, ids) for ids in extra])
        prompt = f.instance["prompt"]
        if self.cc.prm == "judge":
            results = self.ctx.judges[self.cc.prm_judge].judge([{"prompt": prompt, "response": p} for p in prefixes])
            return [float(r["step_scores"][-1]) for r in results]
        return [float(v) for v in self.prm.scores([prompt] * len(prefixes), prefixes).tolist()]

    def _prefix_text(self, tokenizer, ids: list[int]) -> str:
        from trainers.prm import step_prefix_text

        return step_prefix_text(tokenizer.decode(ids, skip_special_tokens=True), self.cc.separator)

    # -- the expert and the branches --------------------------------------------------------------------------------
    def _separator_ids(self, tokenizer) -> list[int]:
        if self.sep_ids is None:
            self.sep_ids = tokenizer(self.cc.separator, add_special_tokens=False).input_ids
        return self.sep_ids

    def _alternatives(self, ctx, failed: list[Failed], seed: int, counts: dict, tokens: dict) -> None:
        """Up to `alternatives` distinct proposals of one step at each candidate, each different from the original
        step. expert=policy: sampled from the prefix by the expert role's policy; expert=oracle: the reference."""
        cc = self.cc
        tok = ctx.policy("solver").tokenizer
        sites = [(f, i) for f in failed for i in f.candidates]
        if cc.expert == "oracle":
            proposals = [[self._oracle_step(f, i)] for f, i in sites]
        elif sites:
            expert = ctx.policy("expert")
            sampling = replace(expert.sampling, n=cc.alternatives, temperature=cc.expert_temperature,
                               max_new_tokens=cc.step_max_new_tokens, stop=[cc.separator], cuts_fraction=0.0)
            out = expert.generate([f.prompt_ids + f.ids[:f.steps[i][0]] for f, i in sites], sampling, seed=seed)
            counts["expert"] += cc.alternatives * len(sites)
            tokens["expert"] += out["tokens"]
            proposals = [[self._first_step(tok, s.response_ids) for s in group] for group in out["samples"]]
        else:
            proposals = []
        for (f, i), group in zip(sites, proposals):
            s, e = f.steps[i]
            seen = {tuple(f.ids[s:e])}
            for ids in group:
                if ids and tok.decode(ids, skip_special_tokens=True).strip() and tuple(ids) not in seen:
                    seen.add(tuple(ids))
                    f.alternatives.append({"step": i, "ids": ids, "text": tok.decode(ids, skip_special_tokens=True)})

    def _first_step(self, tokenizer, ids: list[int]) -> list[int]:
        """A proposal's first step, ending with the separator (added when the proposal stopped without one)."""
        if not ids:
            return []
        _, e = split_steps(ids, tokenizer, self.cc.separator)[0]
        step = ids[:e]
        if self.cc.separator not in tokenizer.decode(step, skip_special_tokens=False):
            eos = getattr(tokenizer, "eos_token_id", None)
            step = [t for t in step if t != eos] + self._separator_ids(tokenizer)
        return step

    def _oracle_step(self, f: Failed, i: int) -> list[int]:
        """The scripted expert: the reference solution's step at index i (its last step past the end)."""
        tok = self.ctx.policy("solver").tokenizer
        pieces = [p for p in f.instance["reference"].split(self.cc.separator) if p.strip()]
        if not pieces:
            return []
        k = min(i, len(pieces) - 1)
        text = pieces[k] + (self.cc.separator if k < len(pieces) - 1 else "")
        return tok(text, add_special_tokens=False).input_ids

    def _branches(self, policy, failed: list[Failed], use_mc: bool, seed: int, counts: dict, tokens: dict) -> None:
        """branch_samples policy continuations from prefix + each alternative. The chosen score: their success
        fraction (prm=mc) or the PRM's score of the alternative step; the continuation kept with a pair: the
        first successful one (loss mask 0)."""
        sites = [(f, a) for f in failed for a in f.alternatives]
        contexts = [(f, f.ids[:f.steps[a["step"]][0]] + a["ids"]) for f, a in sites]
        results = self._continue(policy, contexts, self.cc.branch_samples, seed, counts, tokens, "branch")
        for (f, a), (_, ctx_ids), outcomes in zip(sites, contexts, results):
            a["outcomes"] = [r for _, r in outcomes]
            a["succeeded"] = any(r >= 1.0 for r in a["outcomes"])
            a["continuation"] = next((ids for ids, r in outcomes if r >= 1.0), [])
            if use_mc:
                a["score"] = monte_carlo_value(a["outcomes"])
        if not use_mc:
            tok = policy.tokenizer
            by_f: dict[int, list] = {}
            for (f, a), (_, ctx_ids) in zip(sites, contexts):
                by_f.setdefault(id(f), []).append((f, a, ctx_ids))
            for group in by_f.values():
                f = group[0][0]
                scores = self._prm(tok, f, [], extra=[ids for _, _, ids in group])
                for (_, a, _), s in zip(group, scores):
                    a["score"] = s

    # -- the trained PRM --------------------------------------------------------------------------------------------
    def _record_values(self, failed: list[Failed], policy) -> None:
        """MC-valued steps as PRM examples; every prm_heldout_every-th failed trajectory's steps are held out."""
        tok = policy.tokenizer
        every = max(self.cc.prm_heldout_every, 0)
        for f in failed:
            index = len({e["trajectory"] for e in self.prm_examples})
            heldout = every > 0 and index % every == every - 1
            for prefix, value in zip(self._prefix_texts(tok, f, [e for _, e in f.steps]), f.scores):
                self.prm_examples.append({"prompt": f.instance["prompt"], "prefix": prefix, "value": value,
                                          "heldout": heldout, "trajectory": index})
            for a in f.alternatives:  # an alternative step's value: its branches' success fraction
                prefix = self._prefix_text(tok, f.ids[:f.steps[a["step"]][0]] + a["ids"])
                self.prm_examples.append({"prompt": f.instance["prompt"], "prefix": prefix, "value": a["score"],
                                          "heldout": heldout, "trajectory": index})

    def _train_prm(self, policy) -> dict:
        from trainers.prm import ProcessRewardTrainer

        cc = self.cc
        train = [(e["prompt"], e["prefix"], e["value"]) for e in self.prm_examples if not e["heldout"]]
        heldout = [(e["prompt"], e["prefix"], e["value"]) for e in self.prm_examples if e["heldout"]]
        if not train:
            return {"prm/train_examples": 0}
        self.prm = ProcessRewardTrainer(cc.prm_model or policy.model_path, policy.pcfg.model.chat_template,
                                        lr=cc.prm_lr, seed=self.ctx.cfg.seed, trainable=cc.prm_trainable)
        losses = self.prm.train(train, cc.prm_epochs)
        self.prm_agreement = {"train_examples": len(train), "heldout_examples": len(heldout),
                              "final_loss": losses[-1] if losses else None}
        if heldout:
            self.prm_agreement.update(self.prm.agreement(heldout))
            # what a constant PRM scores: every held-out step on the side where most training values lie
            high = sum(v >= 0.5 for _, _, v in train) * 2 > len(train)
            self.prm_agreement["sign_accuracy_constant"] = sum((v >= 0.5) == high for _, _, v in heldout) / len(heldout)
        (self.ctx.run_dir / "cso_prm.json").write_text(json.dumps(self.prm_agreement, indent=2))
        return {f"prm/{k}": v for k, v in self.prm_agreement.items() if isinstance(v, (int, float))}

    # -- metrics, records, checkpoints ------------------------------------------------------------------------------
    def _metrics(self, failed: list[Failed], pairs: list, counts: dict, tokens: dict, use_mc: bool) -> dict:
        alts = [a for f in failed for a in f.alternatives]
        m = {"cso/failed_mined": len(failed), "cso/candidates": sum(len(f.candidates) for f in failed),
             "cso/alternatives": len(alts), "cso/flips": sum(a["succeeded"] for a in alts),
             "cso/pairs_kept": len(pairs) // 2, "cso/prm_mc": float(use_mc),
             "rollouts/total": sum(counts.values()), "rollout/tokens": sum(tokens.values())}
        m.update({f"rollouts/{k}": v for k, v in counts.items()})
        if alts:
            m["cso/flip_rate"] = m["cso/flips"] / len(alts)
        return m

    @staticmethod
    def _record(f: Failed, tokenizer) -> dict:
        decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True)
        return {"prompt": f.instance["prompt"], "response": decode(f.ids),
                "steps": [decode(f.ids[s:e]) for s, e in f.steps], "scores": f.scores, "candidates": f.candidates,
                "alternatives": [{"step": a["step"], "text": a["text"], "outcomes": a["outcomes"],
                                  "score": a["score"], "kept": a["kept"],
                                  "continuation": decode(a["continuation"])} for a in f.alternatives]}

    def save(self, folder: Path) -> None:
        out = self.state_dir(folder)
        out.mkdir(parents=True, exist_ok=True)
        (out / "state.json").write_text(json.dumps({"mc_runs": self.mc_runs, "prm_examples": self.prm_examples,
                                                    "prm_agreement": self.prm_agreement}))
        if self.prm is not None:
            self.prm.save(out / "prm")
        super().save(folder)  # the records so far

    def load(self, folder: Path) -> None:
        folder = self.state_dir(folder)
        state = folder / "state.json"
        if not state.is_file():
            return
        d = json.loads(state.read_text())
        self.mc_runs, self.prm_examples, self.prm_agreement = d["mc_runs"], d["prm_examples"], d["prm_agreement"]
        if (folder / "prm").is_dir():
            from trainers.prm import ProcessRewardTrainer

            self.prm = ProcessRewardTrainer.from_folder(folder / "prm", self.ctx.policy("solver").pcfg.model.chat_template,
                                                        lr=self.cc.prm_lr, seed=self.ctx.cfg.seed,
                                                        trainable=self.cc.prm_trainable)
