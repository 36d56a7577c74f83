"""The tool-call format and what a tool returns.

A model turn holds at most one call, one JSON object inside a tagged block:

    <tool_call>{"name": "readChunk", "arguments": {"chunk_id": 3}}</tool_call>

Text before the block (the model's reasoning) is allowed; text after it is ignored. Anything else (no
block, two blocks, invalid JSON, a non-object, unknown keys) is a malformed call: the episode answers with an
error message as the tool output and counts it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(CALL_OPEN) + r"(.*?)" + re.escape(CALL_CLOSE), re.S)


class MalformedCall(ValueError):
    """A model turn whose tool call cannot be read; str(e) is one line for the model and the transcript."""


@dataclass
class ToolCall:
    name: str
    arguments: dict = field(default_factory=dict)

    def brief(self) -> str:
        """readChunk(chunk_id=3): for stubs, transcripts and logs."""
        args = ", ".join(f"{k}={json.dumps(v)[:40]}" for k, v in self.arguments.items())
        return f"{self.name}({args})"


@dataclass
class ToolResult:
    text: str  # what the model reads as the tool output
    error: bool = False  # a malformed call or a refused one (bad arguments, unknown key, ...)
    finished: bool = False  # finish(answer) was called
    answer: str | None = None
    delete: int | None = None  # deleteContext(msg_id): the message the agent loop replaces by a stub


def format_call(name: str, **arguments) -> str:
    """The text of one call (the scripted expert writes these; the README shows them)."""
    return f"{CALL_OPEN}{json.dumps({'name': name, 'arguments': arguments})}{CALL_CLOSE}"


def parse_call(text: str) -> ToolCall:
    """The one call in a model turn, or MalformedCall naming what is wrong."""
    blocks = _BLOCK.findall(text)
    if not blocks:
        if CALL_OPEN in text:
            raise MalformedCall(f"unclosed {CALL_OPEN}: end the call with {CALL_CLOSE}")
        raise MalformedCall(f"no tool call: write one {CALL_OPEN}{{\"name\": ..., \"arguments\": {{...}}}}{CALL_CLOSE}")
    if len(blocks) > 1:
        raise MalformedCall(f"{len(blocks)} tool calls in one turn: make exactly one")
    try:
        obj = json.loads(blocks[0])
    except json.JSONDecodeError as e:
        raise MalformedCall(f"the tool call is not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise MalformedCall(f"the tool call must be a JSON object, not {type(obj).__name__}")
    extra = set(obj) - {"name", "arguments"}
    if extra:
        raise MalformedCall(f"unknown keys {sorted(extra)} in the tool call: use \"name\" and \"arguments\"")
    name, arguments = obj.get("name"), obj.get("arguments", {})
    if not isinstance(name, str) or not name:
        raise MalformedCall("the tool call has no \"name\" string")
    if not isinstance(arguments, dict):
        raise MalformedCall(f"\"arguments\" must be a JSON object, not {type(arguments).__name__}")
    return ToolCall(name, arguments)
