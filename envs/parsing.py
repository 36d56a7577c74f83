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

The other way round, ``answer_text`` writes an answer value (what an environment's
``reference()`` may return instead of a response string) in its one text form, and
``format_answer`` wraps that text as a response in a format, so that
``extract_answer(format_answer(answer_text(v), fmt), fmt) == answer_text(v)``.
"""
from __future__ import annotations

import json
import math
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


ANSWER_TEXT_RULE = ("a str (used as the response, unchanged) or a JSON-serialisable answer: a number, a bool, "
                    "or a list/tuple/dict of those and of strings (None, NaN, infinities, sets and other "
                    "objects are refused)")


def _plain(value):
    """``value`` with integral floats as ints and tuples as lists; TypeError/ValueError if not JSON data."""
    if value is None:
        raise TypeError("None is not an answer")
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)  # an IntEnum too: its number, not its name
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, float):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        return int(value) if value.is_integer() and abs(value) < 2 ** 53 else value
    if isinstance(value, (list, tuple)):
        return [None if v is None else _plain(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in value):
            raise TypeError("dict keys must be str or int")
        return {str(_plain(k)): None if v is None else _plain(v) for k, v in value.items()}
    raise TypeError(f"a value of type {type(value).__name__} is not JSON-serialisable")


def answer_text(value) -> str:
    """The one text form of an answer value, as a model would write it.

    str: unchanged. bool: "true"/"false". int: ``str(x)``. float: ``str(x)``, with integral floats as
    ints ("3", never "3.0"; up to 2**53). list/tuple/dict: one line of JSON (``json.dumps``: ", " and
    ": " separators, non-ASCII kept, the same number rules, tuples as lists, null for None inside,
    int dict keys as strings), e.g. "[1, 2, 3]". Raises TypeError, stating ANSWER_TEXT_RULE, for None,
    NaN, infinities and anything json cannot write.
    """
    if isinstance(value, str):
        return value
    try:
        plain = _plain(value)
        if isinstance(plain, bool):
            return "true" if plain else "false"
        if isinstance(plain, (int, float)):
            return str(plain)
        return json.dumps(plain, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as e:
        raise TypeError(f"{e}; an answer must be {ANSWER_TEXT_RULE}") from None


def format_answer(text: str, fmt: str = "final_line") -> str:
    """A response carrying answer ``text`` in format ``fmt``: ``\\boxed{text}`` for "boxed", a ``` block for
    "fenced", the text itself for "final_line", "auto" and "raw" (and any unknown format)."""
    if fmt == "boxed":
        return f"\\boxed{{{text}}}"
    if fmt == "fenced":
        return f"```\n{text}\n```"
    return text
