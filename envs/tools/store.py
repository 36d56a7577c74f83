"""The episode's memory: plain JSON-able data, so an episode can be saved, shipped and resumed exactly.

Chunks are word spans of the loaded document (texts are derived, not stored); the BM25 model over them is
rebuilt lazily after a restore and never serialized.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from rank_bm25 import BM25Okapi

_PUNCT = re.compile(r"[^\w]")
FIELDS = ("documents", "loaded", "index", "notes", "deleted")


def tokens(text: str) -> list[str]:
    """Lowercased words with punctuation stripped: the terms BM25 indexes and queries with."""
    return [t for t in (_PUNCT.sub("", w.lower()) for w in text.split()) if t]


def word_spans(n_words: int, chunk_size: int, overlap: int) -> list[list[int]]:
    """[start, end) word spans of chunk_size words, each starting chunk_size - overlap after the previous."""
    spans, start, step = [], 0, chunk_size - overlap
    while start < n_words:
        end = min(start + chunk_size, n_words)
        spans.append([start, end])
        if end == n_words:
            break
        start += step
    return spans


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass
class MemoryStore:
    documents: dict[str, str] = field(default_factory=dict)
    loaded: list[str] = field(default_factory=list)
    index: dict | None = None
    notes: dict[str, dict] = field(default_factory=dict)
    deleted: list[int] = field(default_factory=list)
    _bm25: tuple | None = field(default=None, init=False, repr=False, compare=False)  # (index key, model)
    _words: tuple | None = field(default=None, init=False, repr=False, compare=False)  # (doc id, its words)

    def build_index(self, doc_id: str, chunk_size: int, overlap: int) -> list[list[int]]:
        """Replace the index by word spans over doc_id (the caller validates the numbers)."""
        spans = word_spans(len(self.documents[doc_id].split()), chunk_size, overlap)
        self.index = {"doc": doc_id, "chunk_size": chunk_size, "overlap": overlap, "spans": spans}
        self._bm25 = None
        return spans

    def n_chunks(self) -> int:
        return len(self.index["spans"]) if self.index else 0

    def chunk_text(self, i: int) -> str:
        if not 0 <= i < self.n_chunks():
            raise IndexError(f"chunk {i} is out of range (the index has {self.n_chunks()} chunks)")
        start, end = self.index["spans"][i]
        doc = self.index["doc"]
        if self._words is None or self._words[0] != doc:  # split a long document once, not once per chunk
            self._words = (doc, self.documents[doc].split())
        return " ".join(self._words[1][start:end])

    def search(self, keyword: str, top_k: int) -> list[tuple[int, float]]:
        """Up to top_k (chunk id, BM25 score) with score > 0, best first, ties by chunk id."""
        query = tokens(keyword)
        if not self.index or not query:
            return []
        key = (self.index["doc"], self.index["chunk_size"], self.index["overlap"], len(self.index["spans"]))
        if self._bm25 is None or self._bm25[0] != key:
            corpus = [tokens(self.chunk_text(i)) or [""] for i in range(self.n_chunks())]
            self._bm25 = (key, BM25Okapi(corpus))
        scores = self._bm25[1].get_scores(query)
        ranked = sorted(((i, float(s)) for i, s in enumerate(scores) if s > 0), key=lambda p: (-p[1], p[0]))
        return ranked[:top_k]

    def to_json(self) -> dict:
        return copy.deepcopy({name: getattr(self, name) for name in FIELDS})

    @classmethod
    def from_json(cls, d: dict) -> MemoryStore:
        """The store a to_json() dict describes; ValueError naming the first malformed field."""
        if not isinstance(d, dict):
            raise ValueError(f"memory store must be a dict, not {type(d).__name__}")
        if set(d) != set(FIELDS):
            bad = sorted(set(d) ^ set(FIELDS))
            raise ValueError(f"memory store field {bad[0]!r} is {'unknown' if bad[0] in d else 'missing'}")
        docs, loaded, index, notes, deleted = (d[name] for name in FIELDS)
        if not isinstance(docs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in docs.items()):
            raise ValueError("memory store field 'documents' must map str ids to str texts")
        if not isinstance(loaded, list) or not all(isinstance(x, str) and x in docs for x in loaded):
            raise ValueError("memory store field 'loaded' must be a list of document ids")
        if index is not None:
            _check_index(index, docs)
        if not isinstance(notes, dict) or not all(
                isinstance(k, str) and isinstance(v, dict) and set(v) == {"summary", "content"}
                and all(isinstance(s, str) for s in v.values()) for k, v in notes.items()):
            raise ValueError("memory store field 'notes' must map keys to {'summary': str, 'content': str}")
        if not isinstance(deleted, list) or not all(_is_int(x) for x in deleted):
            raise ValueError("memory store field 'deleted' must be a list of ints")
        return cls(**copy.deepcopy({name: d[name] for name in FIELDS}))


def _check_index(index, docs: dict) -> None:
    ok = (isinstance(index, dict) and set(index) == {"doc", "chunk_size", "overlap", "spans"}
          and isinstance(index["doc"], str) and index["doc"] in docs and _is_int(index["chunk_size"]) and _is_int(index["overlap"])
          and isinstance(index["spans"], list))
    n_words = len(docs[index["doc"]].split()) if ok else 0
    if not ok or not all(isinstance(s, list) and len(s) == 2 and all(_is_int(x) for x in s)
                         and 0 <= s[0] < s[1] <= n_words for s in index["spans"]):
        raise ValueError("memory store field 'index' must be {'doc', 'chunk_size', 'overlap', 'spans'} "
                         "with [start, end) word spans of a known document")
