"""Memory tools: the store's JSON and chunking, BM25 search, every tool's happy path and refusals, and the
scripted expert driven through run_tool the way the agent loop drives a model."""
import json

import pytest

from envs.tools.expert import ExpertAgent
from envs.tools.memory_tools import MAX_OUTPUT_CHARS, TOOLS, AgentView, cut, run_tool, tool_docs
from envs.tools.protocol import ToolCall, format_call, parse_call
from envs.tools.store import MemoryStore, tokens, word_spans


def numbered(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def view(messages=None, **kw) -> AgentView:
    base = dict(context_tokens=1200, max_context=8000, turn=3, max_turns=30, messages=messages or {})
    return AgentView(**{**base, **kw})


def call(store, name, view_=None, **arguments):
    return run_tool(ToolCall(name, arguments), store, view_ or view())


def indexed(text: str, chunk_size=20, overlap=5) -> MemoryStore:
    store = MemoryStore(documents={"doc": text})
    assert not call(store, "loadDocument", doc_id="doc").error
    assert not call(store, "buildIndex", chunk_size=chunk_size, overlap=overlap).error
    return store


# ---- store ----

def test_spans_with_overlap_by_hand():
    assert word_spans(50, 20, 5) == [[0, 20], [15, 35], [30, 50]]
    assert word_spans(36, 20, 5) == [[0, 20], [15, 35], [30, 36]]
    assert word_spans(10, 20, 5) == [[0, 10]]
    store = indexed(numbered(36))
    assert store.index == {"doc": "doc", "chunk_size": 20, "overlap": 5, "spans": [[0, 20], [15, 35], [30, 36]]}
    assert store.chunk_text(1) == " ".join(f"w{i}" for i in range(15, 35))
    assert store.chunk_text(2) == "w30 w31 w32 w33 w34 w35"
    with pytest.raises(IndexError):
        store.chunk_text(3)


def test_json_round_trip_is_exact():
    store = indexed(numbered(36))
    call(store, "note", key="k", summary="s", content="c")
    store.deleted.append(4)
    d = json.loads(json.dumps(store.to_json()))
    back = MemoryStore.from_json(d)
    assert back == store and back.to_json() == d
    assert back.search("w31", 3) == store.search("w31", 3)
    d["notes"]["k"]["content"] = "changed"  # no aliasing between the dict and the store
    assert back.notes["k"]["content"] == "c"


@pytest.mark.parametrize("field, value", [
    ("documents", {"doc": 3}), ("loaded", ["missing"]), ("notes", {"k": {"summary": "s"}}),
    ("deleted", [True]), ("index", {"doc": "doc", "chunk_size": 20, "overlap": 5, "spans": [[0, 99]]}),
    ("index", {"doc": ["doc"], "chunk_size": 20, "overlap": 5, "spans": []}),
])
def test_from_json_rejects_a_malformed_field(field, value):
    d = indexed(numbered(36)).to_json()
    d[field] = value
    with pytest.raises(ValueError, match=field):
        MemoryStore.from_json(d)


def test_from_json_rejects_missing_and_unknown_fields():
    d = MemoryStore().to_json()
    with pytest.raises(ValueError, match="'extra' is unknown"):
        MemoryStore.from_json({**d, "extra": 1})
    del d["notes"]
    with pytest.raises(ValueError, match="'notes' is missing"):
        MemoryStore.from_json(d)


def test_bm25_ranks_the_rare_keyword_chunk_first():
    words = numbered(200).split()
    words[130] = "Zeppelin,"  # chunk 8 with chunk_size 20 / overlap 5 spans [120, 140), no other chunk
    store = indexed(" ".join(words))
    assert tokens("Zeppelin, the ZEPPELIN!") == ["zeppelin", "the", "zeppelin"]
    assert store.search("zeppelin", 3) == [(8, pytest.approx(store.search("ZEPPELIN", 1)[0][1]))]
    assert store.search("nothing-here", 3) == []
    out = call(store, "searchEngine", keyword="Zeppelin").text
    assert out.startswith("chunk 8 (score ") and out.endswith("w139")  # a short chunk is shown whole
    words[100] = words[131] = "zeppelin"  # chunk 3 [90, 130) has one; chunk 4 of chunk_size 40 / overlap 10 spans [120, 160): two hits beat one
    store = indexed(" ".join(words), chunk_size=40, overlap=10)
    out = call(store, "searchEngine", keyword="zeppelin", top_k=10).text.splitlines()
    assert out[0].startswith("chunk 4 (score ") and out[1].startswith("chunk 3 (score ") and len(out) == 2
    # the preview is a snippet around the first match: 25 words from 8 before it ([122, 147) of [120, 160))
    snippet = out[0].split(": ", 1)[1]
    assert snippet.startswith("...w122 ") and snippet.endswith("w146...") and len(snippet.split()) == 25
    assert "Zeppelin, zeppelin" in snippet


def test_bm25_ties_break_by_chunk_id():
    words = numbered(200).split()
    for i in (10, 70, 130):  # chunks 0, 4, 8, each the same length
        words[i] = "beacon"
    ranked = indexed(" ".join(words)).search("beacon", 10)
    assert [i for i, _ in ranked] == [0, 4, 8] and len({s for _, s in ranked}) == 1


# ---- tools ----

def test_tool_docs_list_every_tool_with_signature():
    docs = tool_docs()
    assert "readChunk(chunk_id: int) - read one chunk of the indexed document" in docs
    assert 'buildIndex(chunk_size: int = 200, overlap: int = 20, doc_id: str = "")' in docs
    assert len(docs.splitlines()) == len(TOOLS) == 11


def test_analyze_and_load():
    store = MemoryStore(documents={"a": "one two\n\nthree four five\n\n\nsix", "b": numbered(3000)})
    assert call(store, "analyzeText").text == "documents:\na: 6 words\nb: 3000 words"
    assert call(store, "analyzeText", doc_id="a").text == "a: 6 words, 3 paragraphs, not loaded, suggested chunk_size 16"
    assert "suggested chunk_size 100" in call(store, "analyzeText", doc_id="b").text
    assert call(store, "loadDocument", doc_id="b").text == "loaded b: 3000 words"
    assert "already loaded" in call(store, "loadDocument", doc_id="b").text and store.loaded == ["b"]
    assert ", loaded," in call(store, "analyzeText", doc_id="b").text
    r = call(store, "loadDocument", doc_id="zz")
    assert r.error and r.text.startswith("error: unknown document 'zz'") and "'a', 'b'" in r.text


def test_build_index_errors():
    store = MemoryStore(documents={"a": numbered(100), "b": numbered(50)})
    assert "no document is loaded" in call(store, "buildIndex").text
    call(store, "loadDocument", doc_id="a")
    call(store, "loadDocument", doc_id="b")
    assert "pass doc_id" in call(store, "buildIndex").text
    assert "not loaded" in call(MemoryStore(documents={"a": "x"}), "buildIndex", doc_id="a").text
    for size, overlap, what in [(15, 0, "chunk_size"), (4097, 0, "chunk_size"), (20, 20, "overlap"), (20, -1, "overlap")]:
        r = call(store, "buildIndex", chunk_size=size, overlap=overlap, doc_id="a")
        assert r.error and r.text.startswith(f"error: {what} must be between")
    r = call(store, "buildIndex", chunk_size=40, overlap=10, doc_id="b")
    assert r.text == "indexed b: 2 chunks (ids 0-1) over words 0-50; chunk i covers words 30*i to 30*i+40"


def test_read_chunk_and_search_need_an_index_and_range():
    store = MemoryStore(documents={"doc": numbered(36)})
    assert call(store, "readChunk", chunk_id=0).text == "error: no index yet: call buildIndex first"
    assert "no index yet" in call(store, "searchEngine", keyword="w1").text
    store = indexed(numbered(36))
    assert call(store, "readChunk", chunk_id=2).text == "chunk 2/3: w30 w31 w32 w33 w34 w35"
    for bad in (3, -1):
        assert call(store, "readChunk", chunk_id=bad).text == f"error: chunk_id {bad} is out of range: use 0 to 2"
    for k in (0, 11):
        assert call(store, "searchEngine", keyword="w1", top_k=k).text.startswith("error: top_k must be between 1")
    assert call(store, "searchEngine", keyword="?!").error
    assert call(store, "searchEngine", keyword="absent").text.startswith("no match for 'absent'")


def test_argument_checking():
    store = indexed(numbered(36))
    r = call(store, "readChunks", chunk_id=1)
    assert r.error and "unknown tool 'readChunks'" in r.text and all(name in r.text for name in TOOLS)
    assert call(store, "readChunk").text == "error: readChunk needs argument chunk_id (int)"
    r = call(store, "readChunk", chunk_id=1, extra=2)
    assert r.error and "unknown argument 'extra' for readChunk: it takes chunk_id" in r.text
    assert "takes no arguments" in call(store, "checkBudget", x=1).text
    for bad in (True, "one", 1.5, [1], None):
        r = call(store, "readChunk", chunk_id=bad)
        assert r.error and "argument chunk_id of readChunk must be int" in r.text
    assert call(store, "readChunk", chunk_id="1").text.startswith("chunk 1/3:")  # digit strings are ints
    assert call(store, "readChunk", chunk_id=1.0).text.startswith("chunk 1/3:")
    r = call(store, "loadDocument", doc_id=7)
    assert r.error and "argument doc_id of loadDocument must be str, not int" in r.text


def test_notes():
    store = MemoryStore()
    assert call(store, "readNote").text == "no notes yet"
    assert not call(store, "note", key="city", summary="where", content="Paris").error
    r = call(store, "note", key="city", summary="again", content="Rome")
    assert r.error and "use updateNote" in r.text and store.notes["city"]["content"] == "Paris"
    assert call(store, "note", key=" ", summary="s", content="c").error
    assert call(store, "updateNote", key="city", mode="append", content="France").text == "updated 'city' (append)"
    assert call(store, "readNote", key="city").text == "city: Paris\nFrance"
    call(store, "updateNote", key="city", mode="overwrite", content="Lyon")
    assert store.notes["city"] == {"summary": "where", "content": "Lyon"}
    assert call(store, "readNote").text == "notes:\ncity: where"
    r = call(store, "updateNote", key="city", mode="replace", content="x")
    assert r.error and "mode must be" in r.text and store.notes["city"]["content"] == "Lyon"
    assert "no note 'town'" in call(store, "updateNote", key="town", mode="append", content="x").text
    assert "keys are ['city']" in call(store, "readNote", key="town").text


def test_check_budget():
    store = MemoryStore(notes={"a": {"summary": "", "content": ""}})
    assert call(store, "checkBudget").text == "context: 1200/8000 tokens (15%); turns: 3/30; notes: 1"


def test_delete_context_validates_against_the_view():
    store = MemoryStore()
    r = call(store, "deleteContext", view(messages={2: "readChunk(chunk_id=1)", 5: "x"}), msg_id=2)
    assert r == type(r)(text="deleted msg 2", delete=2) and store.deleted == []
    r = call(store, "deleteContext", view(messages={2: "a", 5: "b"}), msg_id=0)
    assert r.error and r.delete is None and r.text.endswith("deletable ids are 2, 5")
    assert call(store, "deleteContext", msg_id=1).text.endswith("deletable ids are none")


def test_finish():
    r = call(MemoryStore(), "finish", answer="  42 \n")
    assert (r.text, r.finished, r.answer, r.error) == ("finished", True, "42", False)
    assert call(MemoryStore(), "finish").error


def test_long_outputs_are_cut():
    store = indexed(" ".join(["abcdefghij"] * 1000), chunk_size=1000, overlap=0)
    r = call(store, "readChunk", chunk_id=0)
    assert len(r.text) <= MAX_OUTPUT_CHARS and r.text.rstrip().endswith("of 11010 characters]")
    assert "[output cut: showing" in r.text
    assert cut("short") == "short" and 95 <= len(cut("x" * 5000, 100)) <= 100


# ---- expert ----

FILLER = ("The river ran past the old mill and the wind moved slowly over the quiet fields near town. "
          "Farmers talked about rain, prices and the long road to the market every single week. ")


def make_task(kind: str, inserts: dict[int, str], facts: list[tuple[str, str]], answer: str, n_filler=24) -> dict:
    """A document of filler paragraphs with paragraph inserts[i] placed before filler paragraph i."""
    paragraphs = [FILLER] * n_filler
    for i in sorted(inserts, reverse=True):
        paragraphs.insert(i, inserts[i])
    text = "\n\n".join(paragraphs)
    words, out = text.split(), []
    for sentence, keyword in facts:
        first = sentence.split()
        offset = next(j for j in range(len(words)) if words[j:j + len(first)] == first)
        out.append({"sentence": sentence, "keyword": keyword, "word_offset": offset})
    return {"id": f"t-{kind}", "kind": kind, "question": "?", "answer": answer, "documents": {"doc": text},
            "facts": out, "length": len(words)}


def drive(task, max_turns=40, **kw):
    """The agent loop in miniature: message t is turn t; deletions drop messages and are recorded. A fresh
    ExpertAgent each turn, as the episode runner makes them."""
    store = MemoryStore(documents=dict(task["documents"]))
    history, messages = [], {}
    for turn in range(1, max_turns + 1):
        v = view(messages=dict(messages), turn=turn, max_turns=max_turns)
        text = ExpertAgent(task, chunk_size=60, overlap=10, **kw).next_turn(store, history, v)
        reason, _, block = text.partition("\n")
        assert reason.endswith(".") and block.startswith("<tool_call>")
        c = parse_call(text)
        r = run_tool(c, store, v)
        assert not r.error, (c, r.text)
        history.append((c, r))
        messages[turn] = c.brief()
        if r.delete is not None:
            messages.pop(r.delete)
            store.deleted.append(r.delete)
        if r.finished:
            return store, history, r
    raise AssertionError("the expert never finished")


def test_expert_multihop_reads_notes_and_deletes():
    born, river = "Mira Castell was born in Veltrano.", "The city of Veltrano lies on the Osk river."
    task = make_task("multihop", {5: born, 18: river}, [(born, "Castell"), (river, "Osk")], "Osk")
    store, history, r = drive(task)
    names = [c.name for c, _ in history]
    assert names == ["loadDocument", "buildIndex"] + ["searchEngine", "readChunk", "note", "deleteContext"] * 2 \
        + ["finish"]
    assert r.answer == "Osk"
    reads = [(t, c, res) for t, (c, res) in enumerate(history, 1) if c.name == "readChunk"]
    for (_, _, res), fact in zip(reads, task["facts"]):
        assert fact["sentence"] in res.text  # the chunk it read holds the fact
    searches = [res.text for c, res in history if c.name == "searchEngine"]
    for (_, c, _), out in zip(reads, searches):
        assert out.startswith(f"chunk {c.arguments['chunk_id']} ")  # the rare keyword found that chunk first
    assert store.deleted == [t for t, _, _ in reads]
    assert [n["content"] for n in store.notes.values()] == [f["sentence"] for f in task["facts"]]


def test_expert_count_reads_each_chunk_once_and_can_keep_context():
    one, two, three = "A heron stood by the mill.", "Another heron flew by.", "A third heron waited at the market."
    task = make_task("count", {3: f"{one} {two}", 20: three}, [(one, "heron"), (two, "heron"), (three, "heron")], "3")
    store, history, r = drive(task, delete_read_chunks=False)
    reads = [(c.arguments["chunk_id"], res.text) for c, res in history if c.name == "readChunk"]
    assert len(reads) == len({c for c, _ in reads}) == 2
    assert one in reads[0][1] and two in reads[0][1] and three in reads[1][1]
    assert [c.name for c, _ in history].count("searchEngine") == 1  # one keyword, searched once
    assert len(store.notes) == 3 and "deleteContext" not in [c.name for c, _ in history] and r.answer == "3"


def test_expert_finishes_when_a_fact_is_not_found():
    task = make_task("needle", {4: "The vault code is 4817."}, [("The vault code is 4817.", "vault")], "4817")
    task["facts"].append({"sentence": "ghost", "keyword": "ghost", "word_offset": 10 ** 6})
    store, history, r = drive(task)
    assert r.answer == "4817" and len(store.notes) == 1 and len(store.deleted) == 1


def test_expert_resumes_from_a_restored_store():
    task = make_task("needle", {4: "The vault code is 4817."}, [("The vault code is 4817.", "vault")], "4817")
    store, history, _ = drive(task)
    restored = MemoryStore.from_json(store.to_json())
    text = ExpertAgent(task, chunk_size=60, overlap=10).next_turn(restored, history[:-1], view())
    assert parse_call(text) == ToolCall("finish", {"answer": "4817"})


def test_expert_keeps_read_chunks_while_the_context_has_room_and_can_drop_its_reasons():
    born, river = "Mira Castell was born in Veltrano.", "The city of Veltrano lies on the Osk river."
    task = make_task("multihop", {5: born, 18: river}, [(born, "Castell"), (river, "Osk")], "Osk")
    _, roomy, _ = drive(task, free_context_at=0.5)  # the context holds 1200 of 8000 tokens: 15%, below half
    assert [c.name for c, _ in roomy] == ["loadDocument", "buildIndex", "searchEngine", "readChunk", "searchEngine",
                                          "readChunk", "finish"]
    _, tight, _ = drive(task, free_context_at=0.1)  # past 10%: notes and deletions as before
    assert [c.name for c, _ in tight].count("deleteContext") == 2
    text = ExpertAgent(task, chunk_size=60, overlap=10, reasoning=False).next_turn(
        MemoryStore(documents=dict(task["documents"])), [], view())
    assert text == format_call("loadDocument", doc_id="doc")
