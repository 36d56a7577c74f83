"""Reading judges' answers and placing step scores on tokens: pure functions, no Ray, no model."""
import pytest

from actors.judge import fill_template, parse_verdict, split_steps, step_scores_to_tokens, template_fields
from envs.proposal import parse_yes_no


@pytest.mark.parametrize("text,want", [
    ("yes", True), ("No.", False), ("**Yes**", True), ("Let me think.\nThe answer matches.\nAnswer: no", False),
    ("Yes, the prompt matches.", True),
    ("", None), ("maybe", None), ("Yes, but the bound is wrong", None), ("yes and no", None),
    ("Yes. Actually, no.", None), ("no\nyes", None), ("#k3Q", None),
])
def test_yes_no_is_strict_and_agrees_with_the_self_review_parser(text, want):
    assert parse_verdict(text, "yes_no") is want
    assert parse_verdict(text, "yes_no") is parse_yes_no(text)


@pytest.mark.parametrize("text,want", [
    ("A", "A"), ("b", "B"), ("(A)", "A"), ("[[B]]", "B"), ("**Response A**.", "A"), ("Answer: B", "B"),
    ("Final answer: response b", "B"), ("Response A is clearer.\nVerdict: [[A]]", "A"),
    ("Both have merits.\nB", "B"), ("A\nB is worse, so the choice is clear.", "A"),
    # unparseable: no verdict, a contradiction, a tie, prose that only mentions a letter
    ("", None), ("C", None), ("A or B", None), ("A good answer", None), ("[[A]] ... no, [[B]]", None),
    ("A\nB", None), ("It is a tie: [[C]]", None), ("Response A is better", None), (None, None),
])
def test_preference(text, want):
    assert parse_verdict(text, "preference") == want


@pytest.mark.parametrize("text,want", [
    ("7", 7.0), ("Score: 7.5", 7.5), ("Rating: 8/10", 8.0), ("6 out of 10", 6.0), ("-1", -1.0),
    ("The answer is mostly right.\nscore = .5", 0.5), ("Rating: [[3]]", 3.0), ("**9**.", 9.0),
    ("", None), ("seven", None), ("7 or 8", None), ("Step 1 costs 3 dollars", None), ("7\n8", None),
    ("[[7]] and later [[8]]", None), ("nan", None), ("1e999", None),
])
def test_score(text, want):
    got = parse_verdict(text, "score")
    assert got == want and (got is None or isinstance(got, float))


def test_unknown_parse_mode_is_an_error():
    with pytest.raises(ValueError, match="yes_no, preference, score"):
        parse_verdict("yes", "stars")


def test_templates():
    assert template_fields("Q: {question}\nA: {answer} {question}") == ["question", "answer"]
    assert fill_template("Q: {question}?", {"question": "2+2", "extra": 1}) == "Q: 2+2?"
    with pytest.raises(ValueError, match="needs field"):
        fill_template("{question} {answer}", {"question": "x"})
    with pytest.raises(ValueError, match="named fields"):
        template_fields("{} and {}")


def test_split_steps_spans_cover_each_step():
    response = "Step 1: add.\n\nStep 2: carry.\n  \nDone"
    steps, spans = split_steps(response, "\n")
    assert steps == ["Step 1: add.", "Step 2: carry.", "Done"]
    assert [response[s:e] for s, e in spans] == steps
    assert split_steps("one;two", ";") == (["one", "two"], [[0, 3], [4, 7]])
    assert split_steps("", "\n") == ([""], [[0, 0]])  # no step: the whole (empty) response is one
    assert split_steps(" \n ", "\n") == ([" \n "], [[0, 3]])


def test_step_scores_to_tokens_by_character_offsets():
    # response "ab\ncd\nef": steps [0,2) [3,5) [6,8); tokens: "ab", "\n", "c", "d\n", "ef", eos (zero width)
    spans, scores = [[0, 2], [3, 5], [6, 8]], [0.9, 0.2, 0.6]
    offsets = [(0, 2), (2, 3), (3, 4), (4, 6), (6, 8), (0, 0)]
    assert step_scores_to_tokens(spans, scores, offsets) == [0.9, 0.9, 0.2, 0.2, 0.6, 0.6]
    # a token before the first step (leading blank line) belongs to the first step; a leading special token too
    assert step_scores_to_tokens([[1, 3]], [0.5], [(0, 0), (0, 1), (1, 3)]) == [0.5, 0.5, 0.5]
    assert step_scores_to_tokens(spans, scores, []) == []


def test_step_scores_to_tokens_refuses_mismatched_input():
    with pytest.raises(ValueError, match="2 step spans but 1"):
        step_scores_to_tokens([[0, 1], [2, 3]], [0.5], [(0, 1)])
    with pytest.raises(ValueError, match="no steps"):
        step_scores_to_tokens([], [], [(0, 1)])
