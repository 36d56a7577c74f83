import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envs.longdoc import (
    HELDOUT_SEED_OFFSET,
    KINDS,
    answer_f1,
    answer_match,
    make_task,
    split_tasks,
    truncated_prompt,
)

SEEDS = range(40)


def planted(task: dict) -> list[tuple[int, int]]:
    """(start, end) word ranges of the fact and distractor sentences."""
    return [(s["word_offset"], s["word_offset"] + len(s["sentence"].split()))
            for s in task["facts"] + task["distractors"]]


def filler_words(task: dict) -> list[str]:
    words = task["documents"]["doc"].split()
    keep = [True] * len(words)
    for start, end in planted(task):
        keep[start:end] = [False] * (end - start)
    return [w for w, k in zip(words, keep) if k]


def occurrences(value: str, text: str) -> int:
    return len(re.findall(rf"(?<!\w){re.escape(value.lower())}(?!\w)", text.lower()))


@pytest.fixture(scope="module")
def tasks() -> list[dict]:
    return [make_task(seed, kind, length) for kind in KINDS for length in (200, 3000) for seed in SEEDS]


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_task_and_seeds_differ(kind):
    assert make_task(5, kind, 2000) == make_task(5, kind, 2000)
    docs = {make_task(seed, kind, 2000)["documents"]["doc"] for seed in range(10)}
    assert len(docs) == 10
    assert make_task(5, kind, 2000)["documents"] != make_task(5, kind, 2001)["documents"]


def test_same_task_in_processes_with_different_string_hashing():
    code = ("import hashlib, json; from envs.longdoc import make_task; "
            "print(hashlib.sha256(json.dumps(make_task(7, 'multihop', 1000)).encode()).hexdigest())")
    root = Path(__file__).resolve().parents[2]
    digests = {subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": hash_seed}).stdout.strip()
               for hash_seed in ("1", "2")}
    assert digests == {hashlib.sha256(json.dumps(make_task(7, "multihop", 1000)).encode()).hexdigest()}


@pytest.mark.parametrize("length", [200, 201, 1000, 5000, 20000])
@pytest.mark.parametrize("kind", KINDS)
def test_length_within_two_percent(kind, length):
    for seed in range(5):
        task = make_task(seed, kind, length)
        assert task["length"] == length and task["id"] == f"{kind}-{length}-{seed}"
        assert abs(len(task["documents"]["doc"].split()) - length) <= 0.02 * length


def test_schema_and_paragraphs(tasks):
    for task in tasks:
        assert set(task) >= {"id", "kind", "question", "answer", "documents", "facts", "length"}
        assert list(task["documents"]) == ["doc"]
        doc = task["documents"]["doc"]
        assert "\n\n" in doc and "\n\n\n" not in doc and doc == doc.strip()
        assert task["question"].endswith("?") and task["answer"] and len(task["answer"].split()) <= 3
        for fact in task["facts"]:
            assert set(fact) == {"sentence", "keyword", "word_offset"}


def test_every_planted_sentence_sits_at_its_word_offset(tasks):
    for task in tasks:
        words = task["documents"]["doc"].split()
        for item in task["facts"] + task["distractors"]:
            start, sentence = item["word_offset"], item["sentence"].split()
            assert words[start:start + len(sentence)] == sentence, (task["id"], item)
        offsets = [f["word_offset"] for f in task["facts"]]
        assert len(set(offsets)) == len(offsets)


def test_keyword_only_in_facts_and_question(tasks):
    for task in tasks:
        filler = " ".join(filler_words(task)).lower()
        distractors = " ".join(d["sentence"] for d in task["distractors"]).lower()
        doc = task["documents"]["doc"].lower()
        for i, fact in enumerate(task["facts"]):
            kw = fact["keyword"].lower()
            assert kw in fact["sentence"].lower()
            assert kw not in filler and kw not in distractors, (task["id"], kw)
            assert doc.count(kw) == sum(f["sentence"].lower().count(kw) for f in task["facts"])
            if task["kind"] != "multihop" or i == 0:  # hop 2's keyword is found through hop 1
                assert kw in task["question"].lower()


def test_answer_only_in_fact_sentences(tasks):
    for task in tasks:
        answer, doc = task["answer"], task["documents"]["doc"]
        in_facts = sum(occurrences(answer, f["sentence"]) for f in task["facts"])
        assert occurrences(answer, doc) == in_facts, task["id"]
        assert occurrences(answer, " ".join(filler_words(task))) == 0
        assert all(occurrences(answer, d["sentence"]) == 0 for d in task["distractors"])
        if task["kind"] != "count":
            assert in_facts >= 1


def test_needle_variety_and_shape():
    needles = [make_task(seed, "needle", 1000) for seed in range(80)]
    assert all(len(t["facts"]) == 1 for t in needles)
    assert len({" ".join(t["question"].split()[:3]) for t in needles}) >= 5  # several templates in use
    assert any(t["answer"].isdigit() for t in needles) and any(t["answer"].isalpha() for t in needles)
    assert len({t["answer"] for t in needles}) >= 60


def test_multihop_chain_in_different_thirds():
    for seed in SEEDS:
        for length in (200, 3000, 30000):
            task = make_task(seed, "multihop", length)
            hop1, hop2 = task["facts"]
            thirds = {f["word_offset"] * 3 // length for f in (hop1, hop2)}
            assert len(thirds) == 2, task["id"]
            assert hop2["keyword"] in hop1["sentence"]  # hop 1 names what hop 2 is about
            assert occurrences(task["answer"], hop2["sentence"]) == 1
            assert occurrences(task["answer"], hop1["sentence"]) == 0
            assert 2 <= len(task["distractors"]) <= 3


def test_count_answer_is_number_of_counted_facts():
    counts = set()
    for seed in range(60):
        task = make_task(seed, "count", 4000)
        facts = task["facts"]
        assert task["answer"] == str(len(facts)) and 2 <= len(facts) <= 6
        assert len({f["keyword"] for f in facts}) == 1
        assert [f["word_offset"] for f in facts] == sorted(f["word_offset"] for f in facts)
        assert facts[-1]["word_offset"] - facts[0]["word_offset"] > 4000 / 4  # spread, not clumped
        assert 2 <= len(task["distractors"]) <= 4
        counts.add(len(facts))
    assert counts == {2, 3, 4, 5, 6}


def content_words(sentence: str) -> set[str]:
    """Lower-case words of a sentence without articles and the report-style lead-ins."""
    lead_ins = {"the", "a", "it", "was", "that", "according", "to", "records", "record", "ledger", "states",
                "confirmed"}
    return set(re.findall(r"[a-z]+", sentence.lower())) - lead_ins


@pytest.mark.parametrize("kind", KINDS)
def test_distractors_resemble_facts(kind):
    for seed in range(10):
        task = make_task(seed, kind, 2000)
        assert task["distractors"]
        shapes = [content_words(f["sentence"]) for f in task["facts"]]
        for d in task["distractors"]:  # the same kind of sentence about another made-up name
            words = content_words(d["sentence"])
            assert max(len(shape & words) for shape in shapes) >= 2, (d, task["facts"])


def test_split_tasks_cycles_and_train_heldout_are_disjoint():
    train = split_tasks(0, ["needle", "count"], [200, 400], 8, heldout=False)
    held = split_tasks(0, ["needle", "count"], [200, 400], 8, heldout=True)
    assert [(t["kind"], t["length"]) for t in train[:4]] == [("needle", 200), ("needle", 400), ("count", 200),
                                                              ("count", 400)]
    assert [t["id"] for t in train] == [f"{t['kind']}-{t['length']}-{i}" for i, t in enumerate(train)]
    assert held[0]["id"] == f"needle-200-{HELDOUT_SEED_OFFSET}"
    assert not {t["id"] for t in train} & {t["id"] for t in held}
    assert not {t["documents"]["doc"] for t in train} & {t["documents"]["doc"] for t in held}
    assert split_tasks(0, ["needle"], [200], 3, heldout=True) == [
        make_task(HELDOUT_SEED_OFFSET + i, "needle", 200) for i in range(3)]
    assert split_tasks(3, ["needle"], [200], 0, heldout=False) == []


@pytest.mark.parametrize("args", [
    (0, [], [200], 2, False), (0, ["needle"], [], 2, False), (0, ["needle"], [200], -1, False),
    (-1, ["needle"], [200], 2, False), (HELDOUT_SEED_OFFSET - 1, ["needle"], [200], 2, False),
    (0, ["haystack"], [200], 2, False), (0, ["needle"], [100], 2, True)])
def test_split_tasks_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        split_tasks(*args)


@pytest.mark.parametrize("kind,length,seed", [
    ("haystack", 1000, 0), ("Needle", 1000, 0), ("needle", 199, 0), ("needle", 200_001, 0),
    ("needle", 1000.0, 0), ("needle", True, 0), ("needle", "1000", 0), ("needle", 1000, "0")])
def test_make_task_rejects_bad_arguments(kind, length, seed):
    with pytest.raises(ValueError, match="kind|length|seed"):
        make_task(seed, kind, length)


def test_bounds_are_accepted():
    assert len(make_task(0, "count", 200)["documents"]["doc"].split()) == 200
    assert len(make_task(0, "multihop", 200_000)["documents"]["doc"].split()) == 200_000


def test_answer_match():
    assert answer_match("4817", "4817") == 1.0
    assert answer_match("  The Tarvik. ", "tarvik") == 1.0  # case, article, punctuation, spaces
    assert answer_match("an  amber", "Amber!") == 1.0
    assert answer_match("Tarvik city", "Tarvik") == 0.0
    assert answer_match("4817.", "4871") == 0.0
    assert answer_match("", "") == 1.0


def test_answer_f1():
    assert answer_f1("Tarvik", "Tarvik") == 1.0
    assert answer_f1("the city of Tarvik", "Tarvik") == pytest.approx(0.5)  # p=1/3, r=1 -> 2/4
    assert answer_f1("Quennel Logistics", "Quennel Logistics Ltd") == pytest.approx(0.8)  # p=1, r=2/3
    assert answer_f1("4817", "4871") == 0.0
    assert answer_f1("the", "Tarvik") == 0.0  # nothing left of the prediction
    assert answer_f1("a", "the") == 1.0  # both normalise to nothing
    assert answer_f1("figs figs", "figs") == pytest.approx(2 / 3)  # p=1/2, r=1


def test_truncated_prompt():
    task = make_task(1, "needle", 1000)
    doc = task["documents"]["doc"]
    prompt = truncated_prompt(task, 50)
    shown = prompt.split("Document:\n", 1)[1].split("\n\n[Document truncated", 1)[0]
    assert shown.split() == doc.split()[:50] and doc.startswith(shown)
    assert "first 50 of 1000 words" in prompt
    assert prompt.endswith(f"Question: {task['question']}\nAnswer with the answer only.")
    whole = truncated_prompt(task, 1000)
    assert "truncated" not in whole and doc in whole
    assert truncated_prompt(task, 5000) == whole
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_words"):
            truncated_prompt(task, bad)


def test_generation_time_64k(capsys):
    for kind in KINDS:
        start = time.perf_counter()
        task = make_task(123, kind, 64_000)
        elapsed = time.perf_counter() - start
        assert len(task["documents"]["doc"].split()) == 64_000
        with capsys.disabled():
            print(f"\nlongdoc {kind} 64k words: {elapsed:.3f}s")


def test_answer_hit_finds_the_gold_words_in_a_short_reply():
    from envs.longdoc import answer_hit

    assert answer_hit("The access code for the archive is 4817.", "4817") == 1.0
    assert answer_hit("4817", "4817") == 1.0 and answer_hit("  Tarvik! ", "tarvik") == 1.0
    assert answer_hit("It is 48170.", "4817") == 0.0  # whole words only
    assert answer_hit("It went off 20 times.", "2") == 0.0
    assert answer_hit("Quennel Logistics is in New Tarvik", "new tarvik") == 1.0
    assert answer_hit(" ".join(["1", "2", "3", "4", "5", "6"] * 3), "4") == 0.0  # 18 words: too long to count
    assert answer_hit("", "4817") == 0.0 and answer_hit("anything", "") == 0.0
