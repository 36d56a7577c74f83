"""The memory tools a model calls to manage its own context over a long document.

run_tool never raises for bad model input: an unknown tool, a bad argument or a refused request becomes an
error result (text "error: ...") that the model reads and the episode counts.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable

from .protocol import ToolCall, ToolResult
from .store import MemoryStore, tokens

MAX_OUTPUT_CHARS = 4000
MIN_CHUNK, MAX_CHUNK = 16, 4096
MAX_TOP_K = 10
PREVIEW_WORDS = 25
REQUIRED = object()  # marks a parameter without a default


@dataclass
class AgentView:
    """What the agent loop tells the tools about the episode (the store holds only memory)."""
    context_tokens: int
    max_context: int
    turn: int
    max_turns: int
    messages: dict[int, str]  # deletable message id -> a brief label


@dataclass
class Tool:
    name: str
    description: str  # one line, shown in the system prompt
    params: dict[str, tuple[type, object]]  # name -> (int or str, default or REQUIRED)
    fn: Callable[..., ToolResult | str]  # fn(store, view, **arguments)

    def signature(self) -> str:
        parts = [f"{p}: {t.__name__}" + ("" if d is REQUIRED else f" = {json.dumps(d)}")
                 for p, (t, d) in self.params.items()]
        return f"{self.name}({', '.join(parts)})"


class ToolError(Exception):
    """A refused request; str(e) is the one-line reason the model reads."""


def _words(text: str) -> int:
    return len(text.split())


def _loaded_doc(store: MemoryStore, doc_id: str) -> str:
    if doc_id:
        if doc_id not in store.loaded:
            raise ToolError(f"document {doc_id!r} is not loaded: call loadDocument first (loaded: {store.loaded})")
        return doc_id
    if not store.loaded:
        raise ToolError("no document is loaded: call loadDocument first")
    if len(store.loaded) > 1:
        raise ToolError(f"several documents are loaded {store.loaded}: pass doc_id")
    return store.loaded[0]


def _need_index(store: MemoryStore) -> int:
    if not store.index:
        raise ToolError("no index yet: call buildIndex first")
    return store.n_chunks()


def _suggest_chunk_size(words: int) -> int:
    """Large enough that a long document stays within a few hundred chunks, small enough to read in one go."""
    size = min(400, max(100, words // 30 // 50 * 50))
    return max(MIN_CHUNK, min(size, words))


def analyze_text(store, view, doc_id):
    if not doc_id:
        if not store.documents:
            return "no documents"
        return "documents:\n" + "\n".join(f"{d}: {_words(t)} words" for d, t in store.documents.items())
    if doc_id not in store.documents:
        raise ToolError(f"unknown document {doc_id!r}: use one of {list(store.documents)}")
    text = store.documents[doc_id]
    paragraphs = len([p for p in re.split(r"\n\s*\n", text) if p.strip()])
    return (f"{doc_id}: {_words(text)} words, {paragraphs} paragraphs, "
            f"{'loaded' if doc_id in store.loaded else 'not loaded'}, "
            f"suggested chunk_size {_suggest_chunk_size(_words(text))}")


def load_document(store, view, doc_id):
    if doc_id not in store.documents:
        raise ToolError(f"unknown document {doc_id!r}: use one of {list(store.documents)}")
    already = doc_id in store.loaded
    if not already:
        store.loaded.append(doc_id)
    return f"{'already loaded' if already else 'loaded'} {doc_id}: {_words(store.documents[doc_id])} words"


def build_index(store, view, chunk_size, overlap, doc_id):
    doc = _loaded_doc(store, doc_id)
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise ToolError(f"chunk_size must be between {MIN_CHUNK} and {MAX_CHUNK}, not {chunk_size}")
    if not 0 <= overlap < chunk_size:
        raise ToolError(f"overlap must be between 0 and chunk_size - 1 ({chunk_size - 1}), not {overlap}")
    if not store.documents[doc].split():
        raise ToolError(f"document {doc!r} is empty")
    spans = store.build_index(doc, chunk_size, overlap)
    step, n = chunk_size - overlap, len(spans)
    return (f"indexed {doc}: {n} chunks (ids 0-{n - 1}) over words 0-{spans[-1][1]}; "
            f"chunk i covers words {step}*i to {step}*i+{chunk_size}")


def read_chunk(store, view, chunk_id):
    n = _need_index(store)
    if not 0 <= chunk_id < n:
        raise ToolError(f"chunk_id {chunk_id} is out of range: use 0 to {n - 1}")
    return f"chunk {chunk_id}/{n}: {store.chunk_text(chunk_id)}"


def search_engine(store, view, keyword, top_k):
    _need_index(store)
    if not 1 <= top_k <= MAX_TOP_K:
        raise ToolError(f"top_k must be between 1 and {MAX_TOP_K}, not {top_k}")
    if not re.search(r"\w", keyword):
        raise ToolError("keyword has no words")
    hits = store.search(keyword, top_k)
    if not hits:
        return f"no match for {keyword!r}: try another keyword"
    query, lines = set(tokens(keyword)), []
    for i, score in hits:
        words = store.chunk_text(i).split()
        # the preview: PREVIEW_WORDS words around the first matching word (a search result's snippet)
        first = next((j for j, w in enumerate(words) if set(tokens(w)) & query), 0)
        start = max(0, min(first - PREVIEW_WORDS // 3, len(words) - PREVIEW_WORDS))
        before = "..." if start > 0 else ""
        after = "..." if start + PREVIEW_WORDS < len(words) else ""
        lines.append(f"chunk {i} (score {score:.2f}): {before}{' '.join(words[start:start + PREVIEW_WORDS])}{after}")
    return "\n".join(lines)


def note(store, view, key, summary, content):
    if not key.strip():
        raise ToolError("key is empty")
    if key in store.notes:
        raise ToolError(f"note {key!r} exists: use updateNote to change it")
    store.notes[key] = {"summary": summary, "content": content}
    return f"noted {key!r} ({len(store.notes)} notes)"


def _need_note(store, key):
    if key not in store.notes:
        raise ToolError(f"no note {key!r}: keys are {list(store.notes)}")
    return store.notes[key]


def read_note(store, view, key):
    if key:
        return f"{key}: {_need_note(store, key)['content']}"
    if not store.notes:
        return "no notes yet"
    return "notes:\n" + "\n".join(f"{k}: {v['summary']}" for k, v in store.notes.items())


def update_note(store, view, key, mode, content):
    if mode not in ("append", "overwrite"):
        raise ToolError(f"mode must be \"append\" or \"overwrite\", not {mode!r}")
    entry = _need_note(store, key)
    entry["content"] = f"{entry['content']}\n{content}" if mode == "append" and entry["content"] else content
    return f"updated {key!r} ({mode})"


def check_budget(store, view):
    pct = 100 * view.context_tokens / max(view.max_context, 1)
    return (f"context: {view.context_tokens}/{view.max_context} tokens ({pct:.0f}%); "
            f"turns: {view.turn}/{view.max_turns}; notes: {len(store.notes)}")


def delete_context(store, view, msg_id):
    if msg_id not in view.messages:
        ids = ", ".join(str(i) for i in sorted(view.messages)) or "none"
        raise ToolError(f"msg_id {msg_id} cannot be deleted: deletable ids are {ids}")
    return ToolResult(text=f"deleted msg {msg_id}", delete=msg_id)


def finish(store, view, answer):
    return ToolResult(text="finished", finished=True, answer=answer.strip())


def _tool(name, description, fn, **params) -> Tool:
    return Tool(name, description, params, fn)


TOOLS: dict[str, Tool] = {t.name: t for t in [
    _tool("analyzeText", "list the documents, or the stats of one", analyze_text, doc_id=(str, "")),
    _tool("loadDocument", "load a document so it can be indexed", load_document, doc_id=(str, REQUIRED)),
    _tool("buildIndex", "split the loaded document into numbered chunks of words", build_index,
          chunk_size=(int, 200), overlap=(int, 20), doc_id=(str, "")),
    _tool("readChunk", "read one chunk of the indexed document", read_chunk, chunk_id=(int, REQUIRED)),
    _tool("searchEngine", "find the chunks that best match a keyword (BM25)", search_engine,
          keyword=(str, REQUIRED), top_k=(int, 3)),
    _tool("note", "save a new note that stays when context is deleted", note,
          key=(str, REQUIRED), summary=(str, REQUIRED), content=(str, REQUIRED)),
    _tool("readNote", "read a note, or list all notes without key", read_note, key=(str, "")),
    _tool("updateNote", "append to or overwrite a note", update_note,
          key=(str, REQUIRED), mode=(str, REQUIRED), content=(str, REQUIRED)),
    _tool("checkBudget", "show context tokens and turns used", check_budget),
    _tool("deleteContext", "remove an earlier message from the context", delete_context, msg_id=(int, REQUIRED)),
    _tool("finish", "give the final answer and end the episode", finish, answer=(str, REQUIRED)),
]}


def tool_docs(descriptions: bool = True) -> str:
    """One line per tool, for the system prompt (descriptions=False: signatures only, a shorter prompt)."""
    return "\n".join(f"{t.signature()} - {t.description}" if descriptions else t.signature() for t in TOOLS.values())


def _coerce(value, typ):
    """value as typ, or None; ints may come as JSON numbers or digit strings, never as bools."""
    if typ is str:
        return value if isinstance(value, str) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def _bind(tool: Tool, arguments: dict) -> dict:
    unknown = [a for a in arguments if a not in tool.params]
    if unknown:
        takes = ", ".join(tool.params) or "no arguments"
        raise ToolError(f"unknown argument {unknown[0]!r} for {tool.name}: it takes {takes}")
    bound = {}
    for p, (typ, default) in tool.params.items():
        if p not in arguments:
            if default is REQUIRED:
                raise ToolError(f"{tool.name} needs argument {p} ({typ.__name__})")
            bound[p] = default
            continue
        value = _coerce(arguments[p], typ)
        if value is None:
            raise ToolError(f"argument {p} of {tool.name} must be {typ.__name__}, "
                            f"not {type(arguments[p]).__name__} {json.dumps(arguments[p])[:40]}")
        bound[p] = value
    return bound


def cut(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    if len(text) <= limit:
        return text
    tail = f"\n[output cut: showing {{}} of {len(text)} characters]"
    keep = limit - len(tail.format(limit))
    return text[:keep] + tail.format(keep)


def run_tool(call: ToolCall, store: MemoryStore, view: AgentView) -> ToolResult:
    """Run one call; bad input and refused requests come back as error results."""
    tool = TOOLS.get(call.name)
    try:
        if tool is None:
            raise ToolError(f"unknown tool {call.name!r}: use one of {', '.join(TOOLS)}")
        out = tool.fn(store, view, **_bind(tool, call.arguments))
    except ToolError as e:
        return ToolResult(text=cut(f"error: {e}"), error=True)
    result = out if isinstance(out, ToolResult) else ToolResult(text=out)
    result.text = cut(result.text)
    return result
