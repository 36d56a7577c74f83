"""TokenLedger: one multi-turn episode's tokens, kept so the learner trains on exactly what the engine saw.

    message 0     the prompt
    message t     turn t: the model's ids as generated (mask 1, their behaviour logprobs), then the tool output
                  tokenised once (mask 0)
    delete(t)     message t's ids become a short stub (mask 0): the context the model sees changes, so the
                  current segment ends and the next one starts from the new context

A segment is one trajectory: prompt = the context when it started, response = everything appended since (model
ids mask 1, observations mask 0). Every generation of the segment saw exactly prompt + response[:k] for its k,
so no id is ever decoded and re-tokenised. All segments of an episode share its reward.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Segment:
    prompt_ids: list[int]
    response_ids: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)

    def trained_tokens(self) -> int:
        return sum(self.loss_mask)

    def to_dict(self) -> dict:
        return {"prompt_ids": self.prompt_ids, "response_ids": self.response_ids, "loss_mask": self.loss_mask,
                "logprobs": self.logprobs}


class TokenLedger:
    def __init__(self, prompt_ids: list[int]):
        if not prompt_ids:
            raise ValueError("a ledger needs a non-empty prompt")
        self.messages: list[list[int]] = [list(prompt_ids)]  # the ids of each message as the context holds them
        self.deleted: list[int] = []
        self.segments: list[Segment] = []
        self._open = Segment(list(prompt_ids))
        self.peak = len(prompt_ids)  # the longest context a generation saw, plus what it wrote

    # -- the context the next generation sees ---------------------------------------------------------------------
    def context(self) -> list[int]:
        return self._open.prompt_ids + self._open.response_ids

    def __len__(self) -> int:
        return len(self._open.prompt_ids) + len(self._open.response_ids)

    @property
    def turn(self) -> int:
        """The number of the latest message (0: only the prompt)."""
        return len(self.messages) - 1

    # -- appending -------------------------------------------------------------------------------------------------
    def add_model(self, ids: list[int], logprobs: list[float]) -> None:
        """A new turn: the model's ids exactly as generated, with their behaviour logprobs (mask 1)."""
        if len(ids) != len(logprobs):
            raise ValueError(f"{len(ids)} generated ids with {len(logprobs)} logprobs")
        self.peak = max(self.peak, len(self) + len(ids))
        self.messages.append(list(ids))
        self._append(ids, [1] * len(ids), logprobs)

    def add_observation(self, ids: list[int]) -> None:
        """Ids the model did not write (tool output, template tokens), tokenised once, to the latest turn (mask 0)."""
        if len(self.messages) < 2:
            raise ValueError("an observation follows a model turn")
        self.messages[-1].extend(ids)
        self._append(ids, [0] * len(ids), [0.0] * len(ids))

    def _append(self, ids: list[int], mask: list[int], logprobs: list[float]) -> None:
        self._open.response_ids.extend(ids)
        self._open.loss_mask.extend(mask)
        self._open.logprobs.extend(logprobs)

    # -- changing the context --------------------------------------------------------------------------------------
    def delete(self, msg_id: int, stub_ids: list[int]) -> None:
        """Replace message msg_id (a past turn) by stub ids: the open segment ends here and the next one starts
        from the context with the stub."""
        if not 1 <= msg_id < self.turn or msg_id in self.deleted:
            raise ValueError(f"message {msg_id} cannot be deleted (turns 1..{self.turn - 1}, deleted "
                             f"{self.deleted})")
        self.messages[msg_id] = list(stub_ids)
        self.deleted.append(msg_id)
        self._restart([i for m in self.messages for i in m])

    def restart(self, prompt_ids: list[int]) -> None:
        """A fresh context (a MemAgent-style step: each read starts from a new prompt): a new segment and a new
        message history."""
        self.messages = [list(prompt_ids)]
        self._restart(list(prompt_ids))

    def _restart(self, prompt_ids: list[int]) -> None:
        self._close()
        self._open = Segment(prompt_ids)

    def _close(self) -> None:
        seg = self._open
        while seg.loss_mask and seg.loss_mask[-1] == 0:  # trailing observation: nothing after it is trained
            seg.response_ids.pop(), seg.loss_mask.pop(), seg.logprobs.pop()
        if seg.trained_tokens():
            self.segments.append(seg)
        self._open = Segment(list(seg.prompt_ids))

    def finish(self) -> list[Segment]:
        """The episode's segments (each holds at least one model token)."""
        self._close()
        return self.segments
