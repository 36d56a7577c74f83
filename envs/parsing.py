"""Tolerant answer extraction from model responses.

Formats (``fmt``):
  * "final_line": the last non-empty line, stripped, without a leading
    "Answer:" prefix (any case).
  * "boxed": the content of the last complete ``\\boxed{...}`` (braces may
    nest; a truncated trailing box is skipped in favour of an earlier one).
  * "fenced": the content of the last complete ``` fenced block, without the
    language tag on the opening line.
  * "auto": boxed if present, else fenced if present, else final_line.
  * "raw": the response unchanged.

Returns None when nothing parseable is found (e.g. empty response, no box).
"""
from __future__ import annotations

import re

FORMATS = ("final_line", "boxed", "fenced", "auto", "raw")
_ANSWER_PREFIX = re.compile(r"^answer\s*:\s*", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\s*\{")


def _final_line(text: str) -> str | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line:
            line = _ANSWER_PREFIX.sub("", line, count=1).strip()
            return line or None
    return None


def _balanced(text: str, start: int) -> str | None:
    """Content from ``start`` up to the brace closing an already-open one."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def _boxed(text: str) -> str | None:
    for m in reversed(list(_BOXED.finditer(text))):
        content = _balanced(text, m.end())
        if content is not None:
            return content.strip()
    return None


def _fenced(text: str) -> str | None:
    fences = [m.start() for m in re.finditer(r"```", text)]
    if len(fences) < 2:
        return None
    # Fences pair up in order; an odd trailing fence is an unclosed block.
    last = len(fences) // 2 * 2 - 2
    inner = text[fences[last] + 3:fences[last + 1]]
    if "\n" in inner:
        inner = inner.split("\n", 1)[1]  # drop the language tag line
    return inner.strip("\r\n").rstrip()


def extract_answer(response: str, fmt: str = "final_line") -> str | None:
    """Extract the answer text from ``response`` in format ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown answer format {fmt!r}; expected one of {FORMATS}")
    if not isinstance(response, str) or not response.strip():
        return None
    if fmt == "raw":
        return response
    if fmt == "final_line":
        return _final_line(response)
    if fmt == "boxed":
        return _boxed(response)
    if fmt == "fenced":
        return _fenced(response)
    for extract in (_boxed, _fenced, _final_line):
        answer = extract(response)
        if answer is not None:
            return answer
    return None
