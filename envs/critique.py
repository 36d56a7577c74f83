"""What a critic sees and says when it picks one of k candidate answers (Propose-then-Critic).

A renderer turns (task prompt, candidates in the order shown) into the critic's prompt; `text` numbers the
candidates. Another renderer (click points drawn on a screenshot, for a vision-language critic) registers in
RENDERERS under its own name; the episode only calls `render_candidates`.

The critic answers with a candidate's number: the first integer of its response, which must be 1..k
(`parse_pick`); anything else is no pick. `answer_key` is what majority voting compares: a candidate's
extracted answer, case and spacing folded.
"""
from __future__ import annotations

import re
from collections import Counter

from envs.parsing import extract_answer

INSTRUCTION = "Which candidate answers the task correctly? Reply with the candidate's number only."
_INT = re.compile(r"\d+")


def _cut(text: str, max_chars: int) -> str:
    text = text.strip()
    return text if len(text) <= max_chars else text[:max_chars].rstrip() + " ..."


def render_text(task: str, candidates: list[str], max_chars: int = 400) -> str:
    shown = "\n\n".join(f"Candidate {i}:\n{_cut(c, max_chars) or '(empty)'}" for i, c in enumerate(candidates, 1))
    return f"Task:\n{task.strip()}\n\n{shown}\n\n{INSTRUCTION}"


RENDERERS = {"text": render_text}


def render_candidates(style: str, task: str, candidates: list[str], max_chars: int = 400) -> str:
    if style not in RENDERERS:
        raise ValueError(f"unknown candidate renderer {style!r}: use {', '.join(RENDERERS)}")
    return RENDERERS[style](task, candidates, max_chars)


def parse_pick(response: str, k: int) -> int | None:
    """The 1-based candidate number the critic chose, or None (no integer first, or not in 1..k)."""
    m = _INT.search(response or "")
    if m is None:
        return None
    pick = int(m.group())
    return pick if 1 <= pick <= k else None


def answer_key(response: str) -> str:
    answer = extract_answer(response, "auto") or ""
    return " ".join(answer.split()).lower()


def majority_index(responses: list[str]) -> int:
    """Index of a candidate holding the most common answer (the first such in the given order)."""
    keys = [answer_key(r) for r in responses]
    counts = Counter(keys)
    top = max(counts.values())
    return next(i for i, key in enumerate(keys) if counts[key] == top)
