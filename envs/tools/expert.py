"""A scripted expert that uses the memory tools well, to write teacher trajectories.

Plan: loadDocument -> buildIndex -> per chunk that holds needed facts: searchEngine(the fact's keyword) ->
readChunk -> [when the context is past free_context_at of its budget: note(each fact there) ->
deleteContext(the readChunk turn)] -> finish(gold answer). It knows where the gold facts are, so it wastes no
turns; each call is still one a policy could make from what it has read.

Message ids follow the agent loop: message 0 is the task prompt and turn t (1-based) is message t, so the
readChunk made at turn t is message t. `history` holds every earlier turn in order (the expert writes no
malformed turns, so history position + 1 is the turn).
"""
from __future__ import annotations

from .memory_tools import AgentView
from .protocol import ToolCall, ToolResult, format_call
from .store import MemoryStore


class ExpertAgent:
    """Stateless between turns: each turn is derived from the store, the history and the view, so a fresh
    ExpertAgent per turn (or a resumed episode) continues the same plan."""

    def __init__(self, task: dict, chunk_size: int = 200, overlap: int = 20, delete_read_chunks: bool = True,
                 reasoning: bool = True, free_context_at: float = 0.0):
        """free_context_at: notes are taken and read chunks deleted only once the context holds more than this
        fraction of view.max_context (0: always, after every read)."""
        self.task = task
        self.doc_id = next(iter(task["documents"]))
        self.chunk_size, self.overlap = chunk_size, overlap
        self.delete_read_chunks, self.reasoning = delete_read_chunks, reasoning
        self.free_context_at = free_context_at

    def next_turn(self, store: MemoryStore, history: list[tuple[ToolCall, ToolResult]], view: AgentView) -> str:
        """The full text of the next model turn: one reasoning sentence (reasoning=False: none, shorter turns
        for a small model) and one call."""
        text = self._next(store, history, view)
        return text if self.reasoning else text.split("\n", 1)[1]

    def _next(self, store: MemoryStore, history: list[tuple[ToolCall, ToolResult]], view: AgentView) -> str:
        if self.doc_id not in store.loaded:
            return _turn("I start by loading the document so I can index it.", "loadDocument", doc_id=self.doc_id)
        if not store.index or store.index["doc"] != self.doc_id:
            return _turn("The document is too long to read at once, so I split it into chunks.", "buildIndex",
                         chunk_size=self.chunk_size, overlap=self.overlap)
        built = max((t for t, (c, _) in enumerate(history, 1) if c.name == "buildIndex"), default=0)
        searched = {c.arguments.get("keyword") for c, _ in history[built:] if c.name == "searchEngine"}
        read_at = {c.arguments.get("chunk_id"): t for t, (c, _) in enumerate(history, 1)
                   if t > built and c.name == "readChunk"}  # chunk id -> its turn = its message id
        for chunk, facts in self._facts_by_chunk(store).items():
            keyword = facts[0][1].get("keyword", "")
            if keyword and keyword not in searched:
                return _turn(f"I search for {keyword!r} to find where the document mentions it.", "searchEngine",
                             keyword=keyword)
            if chunk not in read_at:
                return _turn(f"Chunk {chunk} should hold the fact, so I read it.", "readChunk", chunk_id=chunk)
            if read_at[chunk] in view.messages and view.context_tokens <= self.free_context_at * view.max_context:
                continue  # room enough: the chunk stays in context, no note needed
            for n, fact in facts:
                if f"fact_{n}" not in store.notes:
                    return _turn("This chunk holds a fact I need, so I save it in a note.", "note", key=f"fact_{n}",
                                 summary=f"{fact.get('keyword', '')}, chunk {chunk}",
                                 content=fact["sentence"])
            if self.delete_read_chunks and read_at[chunk] in view.messages:
                return _turn(f"The fact is noted, so I free the context chunk {chunk} used.", "deleteContext",
                             msg_id=read_at[chunk])
        return _turn("My notes hold what I need, so I give the answer.", "finish", answer=self.task["answer"])

    def _facts_by_chunk(self, store: MemoryStore) -> dict[int, list[tuple[int, dict]]]:
        """(fact number, fact) grouped by the chunk that holds each, in the order the facts are listed."""
        by_chunk: dict[int, list[tuple[int, dict]]] = {}
        for n, fact in enumerate(self.task.get("facts", []), 1):
            chunk = _chunk_of(store.index["spans"], fact)
            if chunk is not None:
                by_chunk.setdefault(chunk, []).append((n, fact))
        return by_chunk


def _chunk_of(spans: list[list[int]], fact: dict) -> int | None:
    """The first chunk holding the whole fact sentence, else the first holding its first word."""
    start = fact.get("word_offset")
    if not isinstance(start, int):
        return None
    end = start + len(fact.get("sentence", "").split())
    whole = [i for i, (s, e) in enumerate(spans) if s <= start and end <= e]
    first = [i for i, (s, e) in enumerate(spans) if s <= start < e]
    return (whole or first or [None])[0]


def _turn(reason: str, name: str, **arguments) -> str:
    return f"{reason}\n{format_call(name, **arguments)}"
