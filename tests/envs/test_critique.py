"""The critic's view of candidates and the parsing of its pick (Propose-then-Critic)."""
import pytest

from envs.critique import INSTRUCTION, answer_key, majority_index, parse_pick, render_candidates


def test_render_numbers_candidates_in_the_order_given_and_cuts_long_ones():
    text = render_candidates("text", "Add 2 and 3.", ["5", "x" * 50, "  "], max_chars=10)
    assert text.startswith("Task:\nAdd 2 and 3.\n\nCandidate 1:\n5\n\nCandidate 2:\nxxxxxxxxxx ...\n\n")
    assert "Candidate 3:\n(empty)" in text and text.endswith(INSTRUCTION)
    assert "Candidate 4" not in text


def test_unknown_renderer_is_named():
    with pytest.raises(ValueError, match="unknown candidate renderer 'image': use text"):
        render_candidates("image", "t", ["a", "b"])


@pytest.mark.parametrize("response,pick", [("3", 3), (" Candidate 2 is right (2+2=4)", 2), ("4.", 4), ("5", None),
                                           ("0", None), ("12", None), ("none of them", None), ("", None)])
def test_parse_pick_takes_the_first_integer_when_it_names_a_candidate(response, pick):
    assert parse_pick(response, 4) == pick


def test_majority_votes_on_extracted_answers():
    assert answer_key("Let me think.\nAnswer:  Seven  Eight") == "seven eight"
    assert majority_index(["8", "work\n7", " 7 ", "Answer: 9"]) == 1  # "7" twice: its first holder
    assert majority_index(["1", "2", "3"]) == 0  # all tied: the first
