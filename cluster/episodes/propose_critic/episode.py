"""`propose_critic`: the proposer answers, the critic picks among its answers; each makes the other better.

    m            <- the critic's maturity (EMA of its accuracy on mixed groups)
    k, T         <- explore(m): more candidates and a higher temperature as the critic matures
    candidates   <- the proposer's k samples per task                     reward: the environment's score
    picks        <- the critic's samples on the candidates, shuffled and rendered (envs/critique.py), its
                    reply started with critic_prefix when one is set; critic_orders shuffles per set, one group
                                                                          reward: the score of the pick
    train        proposer (advantages x m) on every group; critic (x 1 - m) only on mixed groups
                 (candidates that score differently: a flat group has nothing to pick)
    m            <- decay * m + (1 - decay) * critic accuracy on this step's mixed groups

Accuracy: the pick scores the group's best score. Baselines on the same groups: a random pick (the fraction of
candidates at the best score) and majority vote over the candidates' answers. Every group of a step is written
to run_dir/episodes/propose_critic.jsonl (candidate scores, shown order, picks, rewards).

Held-out (`heldout_tasks` > 0): candidate sets on tasks no step draws, made once by the proposer before the
first step; the critic's greedy pick on them before and after, and (`heldout_samples`) its sampled picks: per
set, the fraction that pick a best candidate, paired before/after -> run_dir/critic_eval_<before|after>.json.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from pathlib import Path

from cluster.config.seeds import seed_range, step_order, step_sampling, task_set
from cluster.episodes.protocol import Episode, EpisodeResult, RoleUpdate
from cluster.evaluation.stats import mean_interval, paired_delta, wilson
from cluster.episodes.common import response_ids, reward_metrics, scale_advantages, to_trajectories
from envs.critique import majority_index, parse_pick, render_candidates

HELDOUT = task_set(0)  # the held-out candidate sets' tasks; also their sampling and order seed
CRITIC_OFFSET = 500_009  # the critic's sampling seed: the step's plus this


def explore(maturity: float, pc) -> tuple[int, float]:
    """The proposer's k and temperature at a maturity: linear from (k_min, temperature_min) at 0 to the max at 1."""
    k = int(round(pc.k_min + maturity * (pc.k_max - pc.k_min)))
    return k, pc.temperature_min + maturity * (pc.temperature_max - pc.temperature_min)


def loss_weights(maturity: float, mode: str) -> tuple[float, float]:
    """(proposer, critic) weights: the critic learns first, the proposer as the critic grows reliable."""
    return (maturity, 1.0 - maturity) if mode == "maturity" else (1.0, 1.0)


def is_mixed(scores: list[float]) -> bool:
    return max(scores) - min(scores) > 1e-9


def judge_group(scores: list[float], order: list[int], picks: list[int | None]) -> dict:
    """One candidate set: `scores` by candidate, `order[i]` the candidate shown as number i + 1, `picks` the
    critic's 1-based numbers (None: no valid pick). Rewards are the picked candidates' scores (0: no pick);
    hits say whether a pick scores the group's best."""
    best = max(scores)
    chosen = [order[p - 1] if p is not None else None for p in picks]
    rewards = [scores[c] if c is not None else 0.0 for c in chosen]
    hits = [c is not None and scores[c] >= best - 1e-9 for c in chosen]
    return {"chosen": chosen, "rewards": rewards, "hits": hits, "mixed": is_mixed(scores),
            "random": sum(s >= best - 1e-9 for s in scores) / len(scores)}


def merge_views(views: list[dict]) -> dict:
    """One candidate set judged in several shown orders (judge_group each) as one group: picks, rewards and hits
    in order of the views."""
    first = views[0]
    return {"chosen": [c for v in views for c in v["chosen"]], "rewards": [r for v in views for r in v["rewards"]],
            "hits": [h for v in views for h in v["hits"]], "mixed": first["mixed"], "random": first["random"]}


def update_maturity(maturity: float, accuracy: float | None, decay: float) -> float:
    return maturity if accuracy is None else decay * maturity + (1.0 - decay) * accuracy


class ProposeCriticEpisode(Episode):
    kind, roles, label = "propose_critic", ("proposer", "critic"), "propose_critic"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.pc = ctx.cfg.episodes.propose_critic
        self.maturity = self.pc.maturity_init
        self.heldout: list[dict] | None = None  # held-out candidate sets: prompt, candidates, scores, order

    def start(self, step: int) -> None:
        """Resuming: the records past the checkpoint's step are dropped (that step runs again). A fresh run with
        heldout_tasks: the held-out candidate sets are made and the critic measured on them."""
        super().start(step)
        if self.pc.heldout_tasks and self.heldout is None:
            t0 = time.time()
            self.heldout = self._heldout_sets(self.ctx)
            print(f"evoforge: propose_critic: {len(self.heldout)} held-out candidate sets (mixed) from "
                  f"{self.pc.heldout_tasks} tasks ({time.time() - t0:.0f} s)", flush=True)
            if not self.heldout:
                print("evoforge: propose_critic: no held-out set is mixed (each task's answers all score alike): "
                      "the critic is not measured; raise episodes.propose_critic.heldout_tasks", flush=True)
        if self.heldout and step == 0:
            self.measure("before")

    def finish(self) -> None:
        if self.heldout:
            self.measure("after")

    def run(self, step: int, ctx) -> EpisodeResult:
        proposer, critic, cfg, pc = ctx.policy("proposer"), ctx.policy("critic"), ctx.cfg, self.pc
        m = self.maturity
        k, temperature = explore(m, pc)
        w_proposer, w_critic = loss_weights(m, pc.weights)
        t0 = time.perf_counter()
        instances = ctx.env.sample(ctx.data_seeds(step), cfg.env.difficulty)
        shots = ctx.shots(None, cfg.env.difficulty)
        prompts = [proposer.encode(i["prompt"], shots) for i in instances]
        sampling = replace(proposer.sampling, n=k, temperature=temperature)
        out = proposer.generate(prompts, sampling, seed=step_sampling(cfg.seed, step))
        texts = [[s.text for s in group] for group in out["samples"]]
        items = [{"data": inst["data"], "response": t} for inst, group in zip(instances, texts) for t in group]
        flat_scores, env_metrics = ctx.env.score(items)
        scores = [flat_scores[g * k:(g + 1) * k] for g in range(len(instances))]
        proposed = to_trajectories(prompts, out["samples"], out["version"], "proposer", self.kind, flat_scores)
        ctx.set_advantages("proposer", proposed)
        scale_advantages(proposed, w_proposer)
        t1 = time.perf_counter()

        # each candidate set is shown in critic_orders shuffled orders; one GRPO group spans them all, so a critic
        # that picks a shown number whatever stands there earns different rewards within its group
        rng, shows = random.Random(step_order(cfg.seed, step)), pc.critic_orders
        orders = [[rng.sample(range(k), k) for _ in range(shows)] for _ in instances]
        shown = [(g, order) for g in range(len(instances)) for order in orders[g]]
        critic_prompts = self._critic_prompts(critic, [{"prompt": instances[g]["prompt"], "candidates": texts[g],
                                                        "order": order} for g, order in shown])
        csampling = replace(critic.sampling, n=pc.critic_samples, temperature=pc.critic_temperature,
                            max_new_tokens=pc.critic_max_new_tokens, cuts_fraction=0.0)
        cout = critic.generate(critic_prompts, csampling, seed=step_sampling(cfg.seed, step, CRITIC_OFFSET))
        views = [judge_group(scores[g], order, [parse_pick(pc.critic_prefix + x.text, k) for x in cout["samples"][j]])
                 for j, (g, order) in enumerate(shown)]
        groups = [merge_views(views[g * shows:(g + 1) * shows]) for g in range(len(instances))]
        mixed = [j for j, (g, _) in enumerate(shown) if groups[g]["mixed"]]
        judged = to_trajectories([critic_prompts[j] for j in mixed], [cout["samples"][j] for j in mixed],
                                 cout["version"], "critic", self.kind, [x for j in mixed for x in views[j]["rewards"]])
        for t in judged:
            t.group_id = shown[mixed[t.group_id]][0]  # the candidate set's own index, whatever order it was shown in
        ctx.set_advantages("critic", judged)
        scale_advantages(judged, w_critic)
        t2 = time.perf_counter()

        metrics = self._metrics(groups, texts, scores, proposed, judged)
        self.maturity = update_maturity(m, metrics.get("critic/accuracy"), pc.maturity_decay)
        metrics.update({"maturity": self.maturity, "maturity/used": m, "weight/proposer": w_proposer,
                        "weight/critic": w_critic, "proposer/k": k, "proposer/temperature": temperature,
                        "timing/propose": t1 - t0, "timing/critic": t2 - t1, **env_metrics})
        self._record(step, shown, views, scores, cout)
        return EpisodeResult({
            "proposer": RoleUpdate(proposed, "grpo", max(temperature, 1e-6), recompute_old=out["off_policy"]),
            "critic": RoleUpdate(judged, "grpo", max(pc.critic_temperature, 1e-6), recompute_old=cout["off_policy"]),
        }, metrics)

    def _metrics(self, groups, texts, scores, proposed, judged) -> dict:
        out = {f"proposer/{k}": v for k, v in reward_metrics(proposed).items()}
        flat = [s for g in scores for s in g]
        out["proposer/hit_rate"] = sum(s >= 1.0 for s in flat) / len(flat)  # fully correct candidates
        out["proposer/best_of_k"] = sum(max(g) for g in scores) / len(scores)
        mixed = [g for g, r in enumerate(groups) if r["mixed"]]
        picks = [c for r in groups for c in r["chosen"]]
        out["critic/flat_fraction"] = 1.0 - len(mixed) / len(groups)
        out["critic/no_pick_fraction"] = sum(c is None for c in picks) / max(len(picks), 1)
        if judged:
            out.update({f"critic/{k}": v for k, v in reward_metrics(judged).items()})
        if mixed:
            hits = [h for g in mixed for h in groups[g]["hits"]]
            majority = [scores[g][majority_index(texts[g])] >= max(scores[g]) - 1e-9 for g in mixed]
            out.update({"critic/accuracy": sum(hits) / len(hits),
                        "critic/random_baseline": sum(groups[g]["random"] for g in mixed) / len(mixed),
                        "critic/majority_baseline": sum(majority) / len(majority)})
        return out

    def _record(self, step: int, shown: list[tuple[int, list[int]]], views: list[dict], scores: list[list[float]],
                cout: dict) -> None:
        """One record per candidate set as shown: its index, the shown order, the critic's picks and rewards."""
        self.record(step, [{"group": g, "scores": scores[g], "order": order, "chosen": r["chosen"],
                            "critic_rewards": r["rewards"], "mixed": r["mixed"],
                            "critic_responses": [x.text for x in cout["samples"][j]]}
                           for j, ((g, order), r) in enumerate(zip(shown, views))])

    # -- held-out candidate sets --------------------------------------------------------------------------------
    def _critic_prompts(self, critic, sets: list[dict]) -> list[list[int]]:
        pc = self.pc
        prefix = response_ids(critic.tokenizer, pc.critic_prefix) if pc.critic_prefix else []
        return [critic.encode(render_candidates(pc.render, s["prompt"], [s["candidates"][j] for j in s["order"]],
                                                pc.max_candidate_chars)) + prefix for s in sets]

    def _heldout_sets(self, ctx) -> list[dict]:
        """The proposer's k_min answers (at temperature_min) to heldout_tasks tasks no step draws; the mixed ones."""
        proposer, cfg, pc = ctx.policy("proposer"), ctx.cfg, self.pc
        k = pc.k_min
        instances = ctx.env.sample(seed_range(HELDOUT, pc.heldout_tasks), cfg.env.difficulty)
        shots = ctx.shots(None, cfg.env.difficulty)
        prompts = [proposer.encode(i["prompt"], shots) for i in instances]
        out = proposer.generate(prompts, replace(proposer.sampling, n=k, temperature=pc.temperature_min),
                                seed=HELDOUT)
        texts = [[s.text for s in group] for group in out["samples"]]
        flat, _ = ctx.env.score([{"data": i["data"], "response": t} for i, g in zip(instances, texts) for t in g])
        rng = random.Random(HELDOUT)
        sets = [{"prompt": inst["prompt"], "candidates": group, "scores": flat[g * k:(g + 1) * k],
                 "order": rng.sample(range(k), k)} for g, (inst, group) in enumerate(zip(instances, texts))]
        return [s for s in sets if is_mixed(s["scores"])]

    def measure(self, tag: str) -> dict:
        """The critic's greedy pick on the held-out sets: accuracy with its 95% interval, the random and majority
        baselines on the same sets -> run_dir/critic_eval_<tag>.json (and, after, the paired change)."""
        critic, sets, run_dir, t0 = self.ctx.policy("critic"), self.heldout, self.ctx.run_dir, time.time()
        greedy = replace(critic.sampling, n=1, temperature=0.0, max_new_tokens=self.pc.critic_max_new_tokens,
                         cuts_fraction=0.0)
        out = critic.generate(self._critic_prompts(critic, sets), greedy, seed=HELDOUT)
        k = self.pc.k_min
        judged = [judge_group(s["scores"], s["order"], [parse_pick(self.pc.critic_prefix + g[0].text, k)])
                  for s, g in zip(sets, out["samples"])]
        hits = [float(j["hits"][0]) for j in judged]
        # the baselines per set, paired with the critic's hits: a random pick's chance, majority vote's hit
        random_rates = [j["random"] for j in judged]
        majority_hits = [float(s["scores"][majority_index(s["candidates"])] >= max(s["scores"]) - 1e-9) for s in sets]
        shown = [parse_pick(self.pc.critic_prefix + g[0].text, k) for g in out["samples"]]
        n = len(sets)
        row = {"tag": tag, "sets": n, "k": k, "accuracy": sum(hits) / max(n, 1),
               "accuracy_ci": list(wilson(sum(hits), n)),
               "random_baseline": sum(random_rates) / max(n, 1),
               "majority_baseline": sum(majority_hits) / max(n, 1),
               "no_pick": sum(j["chosen"][0] is None for j in judged) / max(n, 1), "hits": hits,
               "random": random_rates, "majority_hits": majority_hits,
               # how often each shown number is picked: a critic that reads the candidates spreads its picks as
               # the right ones are spread (the order is shuffled); one number picked always is a position bias
               "picked_number": [sum(p == i for p in shown) for i in range(1, k + 1)],
               "picks": [g[0].text for g in out["samples"]]}
        if self.pc.heldout_samples:
            row["sampled"] = self._sampled(critic, sets)
        before = run_dir / "critic_eval_before.json"
        if tag == "after" and before.is_file() and n:
            earlier = json.loads(before.read_text())
            if len(earlier["hits"]) == n:
                row["change"] = paired_delta(earlier["hits"], hits)
            if "sampled" in row and len(earlier.get("sampled", {}).get("rates", [])) == n:
                row["sampled"]["change"] = paired_delta(earlier["sampled"]["rates"], row["sampled"]["rates"])
        (run_dir / f"critic_eval_{tag}.json").write_text(json.dumps(row, indent=1))
        lo, hi = row["accuracy_ci"]
        print(f"evoforge: critic held-out {tag}: accuracy {row['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] on {n} candidate "
              f"sets (random {row['random_baseline']:.3f}, majority {row['majority_baseline']:.3f})", flush=True)
        if "sampled" in row:
            e = row["sampled"]
            print(f"evoforge: critic held-out {tag}: sampled picks ({e['samples']} per set at T={e['temperature']:g}) "
                  f"accuracy {e['accuracy']:.3f} [{e['accuracy_ci'][0]:.3f}, {e['accuracy_ci'][1]:.3f}] "
                  f"({time.time() - t0:.0f} s)", flush=True)
        return row

    def _sampled(self, critic, sets: list[dict]) -> dict:
        """heldout_samples picks per set at critic_temperature, the same seed before and after: per set the
        fraction that pick a best candidate (the critic's probability of a right pick)."""
        pc, k = self.pc, self.pc.k_min
        sampling = replace(critic.sampling, n=pc.heldout_samples, temperature=pc.critic_temperature,
                           max_new_tokens=pc.critic_max_new_tokens, cuts_fraction=0.0)
        out = critic.generate(self._critic_prompts(critic, sets), sampling, seed=HELDOUT + 1)
        rates = []
        for s, g in zip(sets, out["samples"]):
            picks = [parse_pick(pc.critic_prefix + x.text, k) for x in g]
            rates.append(sum(judge_group(s["scores"], s["order"], picks)["hits"]) / len(g))
        n = len(rates)
        return {"samples": pc.heldout_samples, "temperature": pc.critic_temperature,
                "accuracy": sum(rates) / max(n, 1), "accuracy_ci": list(mean_interval(rates)), "rates": rates}

    def save(self, folder: Path) -> None:
        out = self.state_dir(folder)
        out.mkdir(parents=True, exist_ok=True)
        (out / "state.json").write_text(json.dumps({"maturity": self.maturity}))
        if self.heldout is not None:
            (out / "heldout.json").write_text(json.dumps(self.heldout))

    def load(self, folder: Path) -> None:
        saved = self.state_dir(folder)
        if (saved / "state.json").is_file():
            self.maturity = json.loads((saved / "state.json").read_text())["maturity"]
        if (saved / "heldout.json").is_file():
            self.heldout = json.loads((saved / "heldout.json").read_text())
