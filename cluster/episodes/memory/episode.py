"""Memory-agent episodes (StateLM): the agent answers a question about a document its context cannot hold, with
tools that index, search, read, take notes and delete its own earlier turns.

    memory_agent   tasks <- procedural long documents (envs/longdoc.py), n episodes per task
                   turns <- the agent loop in lockstep (cluster/episodes/memory/agent_loop.py): the policy's call, the tool's output
                   reward = accuracy of finish(answer) - context_penalty * peak context / max_context
                   (accuracy: the gold answer's words in a reply of at most 16 words, envs/longdoc.answer_hit)
                   each episode's segments (one per context change) share its group-relative advantage
    memory_expert  the scripted expert (envs/tools/expert.py) on the same tasks: its turns are the sft targets
                   (the warm start before memory_agent's GRPO)
    memagent       the MemAgent-style baseline: reads chunk after chunk, each time overwriting a bounded memory,
                   then answers from the memory; every read is a segment sharing the episode's reward

Held-out (episodes.memory.heldout_tasks > 0), before the first step and after the last: the agent with tools
(greedy) and the baselines (truncated one-turn reading, MemAgent-style) on tasks no step trains on ->
run_dir/memory_eval_<tag>.json, accuracy by document length and task type.
Every episode's transcript and memory store -> run_dir/episodes/<kind>.jsonl (and with each checkpoint);
`evoforge replay RUN` prints them.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace

from actors.rollout.hf_backend import Sample
from cluster.config.seeds import MEMORY_HELDOUT, memory_tasks, step_sampling, turn_sampling
from cluster.episodes.memory.agent_loop import AgentEpisode, AgentLoop, LoopLimits, TurnFormat, stop_counts
from cluster.episodes.protocol import Episode, EpisodeResult, RoleUpdate
from cluster.episodes.common import append_records
from envs.longdoc import answer_f1, answer_hit, answer_match, make_task, split_tasks, truncated_prompt
from envs.tools.expert import ExpertAgent
from envs.tools.memory_tools import AgentView, tool_docs
from envs.tools.protocol import CALL_CLOSE
from envs.tools.store import MemoryStore
from trainers.batch import Trajectory
from trainers.ledger import TokenLedger

METHOD_NAMES = {"truncated": "truncated reading", "memagent": "MemAgent-style"}


def agent_prompt(task: dict, mc) -> str:
    return (f"You answer a question about a document too long to read at once (the document \"doc\", "
            f"{task['length']} words). Your context holds {mc.max_context} tokens and you have {mc.max_turns} "
            "turns. Each turn make exactly one tool call:\n"
            '<tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>\n'
            f"Tools:\n{tool_docs(mc.tool_descriptions)}\n"
            "Each tool output starts with [msg N]; deleteContext(N) replaces that turn by a short stub.\n"
            f"Question: {task['question']}")


def memagent_prompt(task: dict, memory: str, chunk: str, i: int, n: int) -> str:
    return (f"You read a long document in {n} parts and keep a short memory of what answers the question.\n"
            f"Question: {task['question']}\nMemory so far: {memory or '(empty)'}\nPart {i + 1} of {n}:\n{chunk}\n"
            "Write the updated memory (facts that answer the question), nothing else.")


def memagent_answer_prompt(task: dict, memory: str) -> str:
    return f"Memory: {memory or '(empty)'}\nQuestion: {task['question']}\nAnswer with the answer only."


def saved_store(store: MemoryStore) -> dict:
    """The store's JSON with each document replaced by its task id and length (the task regenerates it)."""
    d = store.to_json()
    d["documents"] = {k: {"words": len(v.split())} for k, v in d["documents"].items()}
    return d


class MemoryEpisodeBase(Episode):
    roles, label = ("agent",), "agent"
    objective = "grpo"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.mc = ctx.cfg.episodes.memory
        policy = ctx.policy("agent")
        self.fmt = TurnFormat(policy.tokenizer, policy.pcfg.model.chat_template)
        mc = self.mc
        self.limits = LoopLimits(mc.max_turns, mc.max_context, mc.turn_max_new_tokens, mc.max_malformed,
                                 mc.tool_timeout_s)

    # -- tasks ----------------------------------------------------------------------------------------------------
    def tasks(self, step: int) -> list[dict]:
        mc, cfg = self.mc, self.ctx.cfg
        count = mc.tasks_per_step or cfg.algorithm.prompts_per_step
        if self.objective == "sft":
            count = mc.expert_tasks_per_step or count
        combos = [(k, n) for n in mc.lengths for k in mc.kinds]
        return [make_task(seed, *combos[(step * count + i) % len(combos)])
                for i, seed in enumerate(memory_tasks(cfg.seed, step, count))]

    # -- episodes ----------------------------------------------------------------------------------------------------
    def new_episode(self, task: dict, group: int) -> AgentEpisode:
        policy = self.ctx.policy("agent")
        prompt = policy.encode(agent_prompt(task, self.mc))
        return AgentEpisode(task, MemoryStore(documents=dict(task["documents"])), TokenLedger(prompt), group)

    def policy_act(self, sampling, seed: int):
        """One batched generate per turn; a different seed each turn."""
        policy, calls = self.ctx.policy("agent"), [0]
        stop = [CALL_CLOSE] if self.mc.stop_at_call_end else []  # a turn ends with its call
        sampling = replace(sampling, n=1, max_new_tokens=self.mc.turn_max_new_tokens, cuts_fraction=0.0,
                           stop=list(sampling.stop) + stop)
        state = {"version": policy.version}

        def act(live, contexts):
            out = policy.generate(contexts, sampling, seed=turn_sampling(seed, calls[0]))
            calls[0] += 1
            state["version"] = out["version"]
            return [g[0] for g in out["samples"]]
        return act, state

    def expert_act(self):
        """The scripted expert's turns as samples: its text tokenised, ended by the end-of-turn token."""
        tok, mc = self.ctx.policy("agent").tokenizer, self.mc

        def act(live, contexts):
            out = []
            for e in live:
                expert = ExpertAgent(e.task, chunk_size=mc.expert_chunk_size, overlap=mc.expert_overlap,
                                     reasoning=mc.expert_reasoning, free_context_at=mc.expert_free_context_at)
                view = AgentView(len(e.ledger), mc.max_context, e.ledger.turn + 1, mc.max_turns, e.labels())
                text = expert.next_turn(e.store, e.history, view)
                ids = tok(text, add_special_tokens=False).input_ids + [tok.eos_token_id]
                out.append(Sample(ids, [0.0] * len(ids), text, "stop"))
            return out
        return act

    def reward(self, e: AgentEpisode) -> float:
        hit = answer_hit(e.answer or "", e.task["answer"]) if e.stop == "finish" else 0.0
        return hit - self.mc.context_penalty * e.ledger.peak / self.mc.max_context

    def trajectories(self, episodes: list, rewards: list[float], version: int) -> list[Trajectory]:
        """Every segment of every episode (an AgentEpisode or a MemAgentRun), with its episode's reward and
        group-relative advantage."""
        proxies = [Trajectory([], [], [], reward=r, group_id=e.group, role="agent") for e, r in zip(episodes, rewards)]
        if self.objective == "grpo":
            self.ctx.set_advantages("agent", proxies)
        out = []
        for e, p in zip(episodes, proxies):
            for k, seg in enumerate(e.ledger.finish()):
                out.append(Trajectory(prompt_ids=seg.prompt_ids, response_ids=seg.response_ids,
                                      behaviour_logprobs=seg.logprobs, loss_mask=seg.loss_mask, reward=p.reward,
                                      group_id=e.group, role="agent", episode=self.kind, policy_version=version,
                                      advantage=p.advantage, metadata={"task": e.task["id"], "segment": k}))
        return out

    def metrics(self, episodes: list[AgentEpisode], rewards: list[float], trajectories: list[Trajectory]) -> dict:
        n = max(len(episodes), 1)
        f1 = [answer_f1(e.answer or "", e.task["answer"]) for e in episodes]
        done = [e.answer or "" if e.stop == "finish" else "" for e in episodes]
        hits = [answer_hit(a, e.task["answer"]) for a, e in zip(done, episodes)]
        exact = [answer_match(a, e.task["answer"]) if a else 0.0 for a, e in zip(done, episodes)]
        calls = [c.name for e in episodes for c, _ in e.history]
        out = {"reward/mean": sum(rewards) / n, "agent/accuracy": sum(hits) / n, "agent/exact_match": sum(exact) / n,
               "agent/f1": sum(f1) / n,
               "agent/turns": sum(len(e.turns) for e in episodes) / n,
               "agent/peak_context": sum(e.ledger.peak for e in episodes) / n,
               "agent/malformed_per_episode": sum(e.malformed for e in episodes) / n,
               "agent/tool_errors_per_episode": sum(e.errors - e.malformed for e in episodes) / n,
               "agent/deletions_per_episode": sum(len(e.deletions) for e in episodes) / n,
               "agent/segments_per_episode": len(trajectories) / n,
               "agent/trained_tokens": sum(sum(t.loss_mask) for t in trajectories),
               **stop_counts(episodes)}
        for name in sorted(set(calls)):
            out[f"tools/{name}"] = calls.count(name) / n
        return out

    def record_episodes(self, step: int, episodes: list[AgentEpisode], rewards: list[float]) -> None:
        """Each episode's transcript and memory store (`evoforge replay`)."""
        self.record(step, [{"episode": i, "reward": r, **e.transcript(), "store": saved_store(e.store)}
                           for i, (e, r) in enumerate(zip(episodes, rewards))])

    def run_loop(self, episodes: list[AgentEpisode], act) -> float:
        loop = AgentLoop(self.fmt, self.limits)
        t0 = time.perf_counter()
        try:
            loop.run(episodes, act)
        finally:
            loop.close()
        return time.perf_counter() - t0


class MemoryAgentEpisode(MemoryEpisodeBase):
    kind = "memory_agent"

    def run(self, step: int, ctx) -> EpisodeResult:
        policy = ctx.policy("agent")
        sampling = policy.sampling
        tasks = self.tasks(step)
        episodes = [self.new_episode(t, g) for g, t in enumerate(tasks) for _ in range(sampling.n)]
        act, state = self.policy_act(sampling, seed=step_sampling(ctx.cfg.seed, step))
        seconds = self.run_loop(episodes, act)
        rewards = [self.reward(e) for e in episodes]
        trajectories = self.trajectories(episodes, rewards, state["version"])
        self.record_episodes(step, episodes, rewards)
        metrics = {**self.metrics(episodes, rewards, trajectories), "timing/rollout": seconds}
        update = RoleUpdate(trajectories, "grpo", max(sampling.temperature, 1e-6),
                            recompute_old=getattr(policy, "scripted", False))
        return EpisodeResult({"agent": update}, metrics)

    def start(self, step: int) -> None:
        super().start(step)
        if self.mc.heldout_tasks and step == 0:
            self.measure("before")

    def finish(self) -> None:
        if self.mc.heldout_tasks:
            self.measure("after")

    # -- held-out ---------------------------------------------------------------------------------------------------
    def measure(self, tag: str) -> dict:
        """Greedy answers on the held-out tasks: the agent with tools, and the baselines named in
        episodes.memory.heldout_baselines -> run_dir/memory_eval_<tag>.json."""
        mc, ctx = self.mc, self.ctx
        policy = ctx.policy("agent")
        tasks = split_tasks(ctx.cfg.seed, mc.kinds, mc.lengths, mc.heldout_tasks, heldout=True)
        greedy = replace(policy.sampling, temperature=0.0)
        baselines = list(mc.heldout_baselines) if tag == "before" or mc.baselines_after else []
        print(f"evoforge: memory held-out {tag}: {len(tasks)} tasks, greedy: the agent with tools"
              + "".join(f", {METHOD_NAMES[b]}" for b in baselines) + " ...", flush=True)
        t0 = time.time()
        rows, times = [], {}
        episodes = [self.new_episode(t, g) for g, t in enumerate(tasks)]
        act, _ = self.policy_act(greedy, seed=MEMORY_HELDOUT)
        self.run_loop(episodes, act)
        rows += [self._row("tools", e.task, e.answer if e.stop == "finish" else "", e) for e in episodes]
        log = ctx.run_dir / "episodes" / f"memory_heldout_{tag}.jsonl"  # `evoforge replay RUN --kind heldout_<tag>`
        log.unlink(missing_ok=True)
        append_records(log, [{"step": -1, "episode": i, "reward": answer_hit(e.answer or "", e.task["answer"])
                              if e.stop == "finish" else 0.0, **e.transcript(), "store": saved_store(e.store)}
                             for i, e in enumerate(episodes)])
        times["tools"] = time.time() - t0
        for name in baselines:
            t1 = time.time()
            if name == "truncated":
                prompts = [policy.encode(truncated_prompt(t, mc.truncated_words)) for t in tasks]
                out = policy.generate(prompts, replace(greedy, n=1, max_new_tokens=mc.answer_max_new_tokens),
                                      seed=MEMORY_HELDOUT)
                rows += [self._row("truncated", t, g[0].text) for t, g in zip(tasks, out["samples"])]
            elif name == "memagent":
                mem = [MemAgentRun(self, t, g) for g, t in enumerate(tasks)]
                run_memagent(self, mem, greedy, seed=MEMORY_HELDOUT)
                rows += [self._row("memagent", r.task, r.answer, r) for r in mem]
            times[name] = time.time() - t1
        summary = {"tag": tag, "policy_version": policy.version, "tasks": len(tasks), "rows": rows,
                   "accuracy": {m: _mean([r["hit"] for r in rows if r["method"] == m])
                                for m in dict.fromkeys(r["method"] for r in rows)}}
        (ctx.run_dir / f"memory_eval_{tag}.json").write_text(json.dumps(summary, indent=1))
        line = ", ".join(f"{m} {a:.3f} ({times[m]:.0f} s)" for m, a in summary["accuracy"].items())
        print(f"evoforge: memory held-out {tag}, {len(tasks)} tasks, accuracy: {line}", flush=True)
        return summary

    @staticmethod
    def _row(method: str, task: dict, answer: str, e=None) -> dict:
        row = {"method": method, "task": task["id"], "kind": task["kind"], "length": task["length"],
               "answer": answer, "gold": task["answer"], "hit": answer_hit(answer, task["answer"]),
               "exact": answer_match(answer, task["answer"]),
               "f1": answer_f1(answer, task["answer"])}
        if isinstance(e, AgentEpisode):
            row.update(stop=e.stop, turns=len(e.turns), peak_context=e.ledger.peak)
        elif e is not None:
            row.update(stop=e.stop, turns=e.reads + 1, peak_context=e.ledger.peak)
        return row


class MemoryExpertEpisode(MemoryEpisodeBase):
    """The warm start: the scripted expert's episodes, trained with `sft` on its own (mask-1) tokens."""
    kind, label, objective = "memory_expert", "agent", "sft"

    def run(self, step: int, ctx) -> EpisodeResult:
        policy = ctx.policy("agent")
        episodes = [self.new_episode(t, g) for g, t in enumerate(self.tasks(step))]
        seconds = self.run_loop(episodes, self.expert_act())
        rewards = [self.reward(e) for e in episodes]
        solved = [(e, r) for e, r in zip(episodes, rewards) if e.stop == "finish" and r > 0]
        # only the expert's solved episodes are targets (one that ran out of turns or context is not shown)
        trajectories = self.trajectories([e for e, _ in solved], [r for _, r in solved], policy.version)
        self.record_episodes(step, episodes, rewards)
        metrics = {**self.metrics(episodes, rewards, trajectories), "timing/rollout": seconds,
                   "expert/kept_fraction": len(solved) / max(len(episodes), 1)}
        return EpisodeResult({"agent": RoleUpdate(trajectories, "sft")}, metrics)


# -- MemAgent-style baseline --------------------------------------------------------------------------------------
class MemAgentRun:
    """One MemAgent-style episode: a bounded memory overwritten after each chunk, then an answer."""

    def __init__(self, ep: MemoryEpisodeBase, task: dict, group: int):
        mc = ep.mc
        words = task["documents"]["doc"].split()
        size = mc.memagent_chunk_words
        self.chunks = [" ".join(words[i:i + size]) for i in range(0, len(words), size)][:mc.memagent_max_chunks]
        self.task, self.group, self.memory, self.answer, self.reads = task, group, "", "", 0
        self.stop: str | None = None
        self.ledger: TokenLedger | None = None
        self.turns: list[dict] = []

    def prompt(self) -> str:
        if self.reads < len(self.chunks):
            return memagent_prompt(self.task, self.memory, self.chunks[self.reads], self.reads, len(self.chunks))
        return memagent_answer_prompt(self.task, self.memory)


def run_memagent(ep: MemoryEpisodeBase, runs: list[MemAgentRun], sampling, seed: int) -> None:
    """All runs in lockstep: one generate per read over the runs still reading, then one for the answers."""
    policy, mc = ep.ctx.policy("agent"), ep.mc
    sampling = replace(sampling, n=1, cuts_fraction=0.0)
    turn = 0
    while live := [r for r in runs if r.stop is None]:
        prompts = [policy.encode(r.prompt()) for r in live]
        for r, p in zip(live, prompts):
            if r.ledger is None:
                r.ledger = TokenLedger(p)
            else:
                r.ledger.restart(p)
        answering = [r.reads >= len(r.chunks) for r in live]
        out = policy.generate(prompts, replace(sampling, max_new_tokens=max(
            mc.answer_max_new_tokens if a else mc.memagent_memory_tokens for a in answering)), seed=seed + turn)
        turn += 1
        for r, a, g in zip(live, answering, out["samples"]):
            s = g[0]
            limit = mc.answer_max_new_tokens if a else mc.memagent_memory_tokens
            ids, logprobs = s.response_ids[:limit], s.logprobs[:limit]
            text = policy.tokenizer.decode(ids, skip_special_tokens=True) if len(ids) < len(s.response_ids) else s.text
            r.ledger.add_model(ids, logprobs)
            r.turns.append({"read": r.reads, "text": text})
            if a:
                r.answer, r.stop = text.strip(), "finish"
            else:
                r.memory, r.reads = text.strip(), r.reads + 1


class MemAgentEpisode(MemoryEpisodeBase):
    kind = "memagent"

    def run(self, step: int, ctx) -> EpisodeResult:
        policy = ctx.policy("agent")
        sampling = policy.sampling
        runs = [MemAgentRun(self, t, g) for g, t in enumerate(self.tasks(step)) for _ in range(sampling.n)]
        t0 = time.perf_counter()
        run_memagent(self, runs, sampling, seed=step_sampling(ctx.cfg.seed, step))
        seconds = time.perf_counter() - t0
        rewards = [answer_hit(r.answer, r.task["answer"]) for r in runs]
        trajectories = self.trajectories(runs, rewards, policy.version)  # a run has .group, .task and .ledger
        self.record(step, [{"episode": i, "reward": x, "task": r.task["id"], "answer": r.answer,
                            "gold": r.task["answer"], "turns": r.turns} for i, (r, x) in enumerate(zip(runs, rewards))])
        metrics = {"reward/mean": _mean(rewards), "agent/accuracy": _mean(rewards),
                   "agent/exact_match": _mean([answer_match(r.answer, r.task["answer"]) for r in runs]),
                   "agent/f1": _mean([answer_f1(r.answer, r.task["answer"]) for r in runs]),
                   "agent/turns": _mean([r.reads + 1 for r in runs]), "timing/rollout": seconds}
        return EpisodeResult({"agent": RoleUpdate(trajectories, "grpo", max(sampling.temperature, 1e-6))}, metrics)


def _mean(xs) -> float:
    return sum(xs) / len(xs) if xs else 0.0
