import pytest

from envs.parsing import extract_answer


def test_final_line():
    assert extract_answer("think\n\n  Answer: 42  \n\n") == "42"
    assert extract_answer("a\nanswer:7") == "7"
    assert extract_answer("just this") == "just this"


@pytest.mark.parametrize("fmt", ["final_line", "boxed", "fenced", "auto", "raw"])
def test_empty_is_none(fmt):
    assert extract_answer("", fmt) is None
    assert extract_answer(" \n\t", fmt) is None


def test_boxed_nested_and_last():
    text = r"first \boxed{1} then \boxed{\frac{1}{2}} done"
    assert extract_answer(text, "boxed") == r"\frac{1}{2}"
    assert extract_answer(r"\boxed{a{b{c}}d}", "boxed") == "a{b{c}}d"


def test_boxed_truncated_falls_back_and_missing():
    assert extract_answer(r"\boxed{3} and \boxed{4", "boxed") == "3"
    assert extract_answer("no box here", "boxed") is None


def test_fenced():
    text = "x\n```python\nprint(1)\n```\nmore\n```\nlast block\n```\ntrailer"
    assert extract_answer(text, "fenced") == "last block"
    assert extract_answer("```py\n  indented\n```", "fenced") == "  indented"
    assert extract_answer("```inline```", "fenced") == "inline"
    assert extract_answer("```\nunclosed", "fenced") is None


def test_auto_priority():
    assert extract_answer("```\ncode\n```\n\\boxed{9}\nend", "auto") == "9"
    assert extract_answer("```\ncode\n```\nend", "auto") == "code"
    assert extract_answer("a\nb", "auto") == "b"


def test_unknown_format():
    with pytest.raises(ValueError):
        extract_answer("x", "nope")
