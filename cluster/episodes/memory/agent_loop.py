"""Multi-turn episodes in lockstep: one generate call per turn over every live episode.

    while some episode is live:
        stop those whose context cannot hold another turn           (context_limit)
        samples <- act(live contexts)                               one batched call: the policy, or a script
        per episode: ledger += the model's ids as generated; call <- parse; result <- tool(call, store)
                     ledger += the result tokenised once (mask 0); a deletion starts a new segment
                     stop on finish, max turns, too many malformed calls, a tool timeout

Tools run here, in the driver, beside each episode's memory store: they are our code on data (no model-written
code), cheap next to a generation turn, and keeping the store in one process keeps its JSON exact for replay.
Each call has a time limit; one that overruns ends its episode (tool_timeout).
"""
from __future__ import annotations

import concurrent.futures as cf
import time
from dataclasses import dataclass, field

from actors.rollout.hf_backend import Sample
from envs.tools.memory_tools import AgentView, run_tool
from envs.tools.protocol import MalformedCall, ToolCall, ToolResult, parse_call
from envs.tools.store import MemoryStore
from trainers.ledger import TokenLedger

STOP_REASONS = ("finish", "max_turns", "context_limit", "malformed", "tool_timeout")


class TurnFormat:
    """How a tool output enters the context: as the next user turn of the chat template (or plain text for a
    model without one), tokenised once. The template's pieces around the content are found by rendering a
    conversation with placeholders, so any chat template works."""

    def __init__(self, tokenizer, chat_template: bool):
        self.tokenizer, self.eos = tokenizer, tokenizer.eos_token_id
        if chat_template:
            a, x = "\u2063A\u2063", "\u2063X\u2063"
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": "q"}, {"role": "assistant", "content": a},
                 {"role": "user", "content": x}], add_generation_prompt=True, tokenize=False)
            after = text[text.index(a) + len(a):]
            eos_text = tokenizer.eos_token or ""
            if eos_text and after.startswith(eos_text):  # the model's own eos ends its turn
                after = after[len(eos_text):]
            before, _, behind = after.partition(x)
        else:
            before, behind = "\n[tool] ", "\n"
        self.before = self._ids(before, specials=True)
        self.behind = self._ids(behind, specials=True)

    def _ids(self, text: str, specials: bool = False) -> list[int]:
        if specials:
            return self.tokenizer(text, add_special_tokens=False).input_ids
        # tool output is data: text that looks like a special token stays text
        return self.tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids

    def observation(self, content: str, model_ids: list[int]) -> list[int]:
        """The ids after a model turn: its end-of-turn token when generation stopped without one (mask 0, so
        the template stays whole), then the tool output as the next turn."""
        close = [] if model_ids and model_ids[-1] == self.eos else [self.eos]
        return close + self.before + self._ids(content) + self.behind

    def text(self, content: str) -> list[int]:
        """Plain text ids (a deleted turn's stub)."""
        return self._ids(content)


@dataclass
class Turn:
    """One turn of the transcript."""
    msg: int
    text: str  # what the model wrote
    call: str  # the call, briefly ("" when malformed)
    output: str  # the tool output the model read next
    error: bool = False
    tokens: int = 0  # the model's tokens this turn
    context: int = 0  # the context length the model saw

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class AgentEpisode:
    """One live episode: its task, memory store, token ledger and transcript."""
    task: dict
    store: MemoryStore
    ledger: TokenLedger
    group: int = 0  # episodes of one task share a group (group-relative advantages)
    turns: list[Turn] = field(default_factory=list)
    stop: str | None = None
    answer: str | None = None
    malformed: int = 0
    errors: int = 0
    deletions: list[dict] = field(default_factory=list)  # {"turn", "msg", "stub"}
    history: list[tuple[ToolCall, ToolResult]] = field(default_factory=list)  # parsed calls (the expert reads it)

    def labels(self) -> dict[int, str]:
        """Deletable messages: every earlier turn not yet deleted."""
        return {t.msg: t.call or "malformed" for t in self.turns if t.msg not in self.ledger.deleted}

    def transcript(self) -> dict:
        return {"task": {k: v for k, v in self.task.items() if k != "documents"}, "stop": self.stop,
                "answer": self.answer, "malformed": self.malformed, "errors": self.errors,
                "peak_context": self.ledger.peak, "deletions": self.deletions,
                "turns": [t.to_dict() for t in self.turns]}


@dataclass
class LoopLimits:
    max_turns: int = 16
    max_context: int = 2048  # tokens the model may see plus what it writes in one turn
    max_new_tokens: int = 96  # per turn
    max_malformed: int = 3  # malformed calls before the episode stops
    tool_timeout_s: float = 5.0


class AgentLoop:
    def __init__(self, fmt: TurnFormat, limits: LoopLimits):
        self.fmt, self.limits = fmt, limits
        self.pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="memory-tools")
        self.tool_seconds = 0.0
        self.engine_inputs: list[tuple[int, list[int]]] | None = None  # (episode index, ids): set to a list to record

    def run(self, episodes: list[AgentEpisode], act) -> None:
        """act(episodes, contexts) -> one Sample per episode (a batched policy call, or a script)."""
        lim = self.limits
        while True:
            for e in episodes:
                if e.stop is None and len(e.ledger) + lim.max_new_tokens > lim.max_context:
                    e.stop = "context_limit"
            live = [e for e in episodes if e.stop is None]
            if not live:
                return
            contexts = [e.ledger.context() for e in live]
            if self.engine_inputs is not None:
                self.engine_inputs += [(episodes.index(e), list(c)) for e, c in zip(live, contexts)]
            samples = act(live, contexts)
            for e, sample in zip(live, samples):
                self.step(e, sample)

    def step(self, e: AgentEpisode, sample: Sample) -> None:
        lim, seen = self.limits, len(e.ledger)
        e.ledger.add_model(sample.response_ids, sample.logprobs)
        msg = e.ledger.turn
        view = AgentView(context_tokens=seen + len(sample.response_ids), max_context=lim.max_context, turn=msg,
                         max_turns=lim.max_turns, messages=e.labels())
        # what the ids say, stop strings included (an engine's text leaves out the stop string that ended it)
        text = self.fmt.tokenizer.decode(sample.response_ids, skip_special_tokens=True)
        try:
            call = parse_call(text)
        except MalformedCall as err:
            call, result = None, ToolResult(f"error: {err}", error=True)
            e.malformed += 1
        else:
            result = self._run_tool(call, e.store, view)
            if result is None:
                result, e.stop = ToolResult(f"error: {call.name} timed out after {lim.tool_timeout_s:g} s",
                                            error=True), "tool_timeout"
        e.errors += result.error
        output = f"[msg {msg}] {result.text}"
        e.ledger.add_observation(self.fmt.observation(output, sample.response_ids))
        e.turns.append(Turn(msg, text, call.brief() if call else "", output, result.error,
                            len(sample.response_ids), seen))
        if call is not None:
            e.history.append((call, result))
        if result.delete is not None:
            label = e.labels().get(result.delete, "")
            stub = f"[msg {result.delete} deleted: {label}]"
            e.ledger.delete(result.delete, self.fmt.text(stub) + self.fmt.observation(stub, []))
            e.store.deleted.append(result.delete)
            e.deletions.append({"turn": msg, "msg": result.delete, "stub": stub})
        if e.stop is not None:
            return
        if result.finished:
            e.stop, e.answer = "finish", result.answer
        elif e.malformed >= lim.max_malformed:
            e.stop = "malformed"
        elif msg >= lim.max_turns:
            e.stop = "max_turns"

    def _run_tool(self, call: ToolCall, store: MemoryStore, view: AgentView) -> ToolResult | None:
        """The tool's result, or None when it overran its time limit: a thread cannot be killed, so the call is
        left to finish on its own and its episode ends (tool_timeout); later calls get a fresh thread."""
        t0 = time.perf_counter()
        future = self.pool.submit(run_tool, call, store, view)
        try:
            return future.result(timeout=self.limits.tool_timeout_s)
        except cf.TimeoutError:
            self.pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="memory-tools")
            return None
        finally:
            self.tool_seconds += time.perf_counter() - t0

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def stop_counts(episodes: list[AgentEpisode]) -> dict:
    return {f"stop/{r}": sum(e.stop == r for e in episodes) / max(len(episodes), 1) for r in STOP_REASONS}
