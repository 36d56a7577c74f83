"""TokenLedger: model ids kept as generated, observations mask 0, a new segment on each deletion."""
import pytest

from trainers.ledger import TokenLedger


def test_append_only_turns_make_one_segment_with_exact_masks():
    led = TokenLedger([1, 2, 3])
    led.add_model([10, 11], [-0.5, -0.25])
    led.add_observation([90, 91, 92])
    assert led.context() == [1, 2, 3, 10, 11, 90, 91, 92]
    led.add_model([12], [-1.0])
    led.add_observation([93])
    (seg,) = led.finish()
    assert seg.prompt_ids == [1, 2, 3]
    assert seg.response_ids == [10, 11, 90, 91, 92, 12]  # the trailing observation is dropped: nothing follows it
    assert seg.loss_mask == [1, 1, 0, 0, 0, 1]
    assert seg.logprobs == [-0.5, -0.25, 0.0, 0.0, 0.0, -1.0]
    assert led.peak == 9  # 8 tokens in context when turn 2 was generated, plus its 1 token


def test_delete_ends_the_segment_and_the_next_starts_from_the_stubbed_context():
    led = TokenLedger([1])
    led.add_model([10, 11], [-1.0, -1.0])      # turn 1
    led.add_observation([80, 81, 82, 83])
    led.add_model([20], [-2.0])                # turn 2: deleteContext(1)
    led.add_observation([84])
    before = led.context()
    led.delete(1, [5])
    assert led.deleted == [1]
    assert led.context() == [1, 5, 20, 84]     # msg 1 -> its stub; turn 2 and its output stay
    led.add_model([30, 31], [-3.0, -3.0])      # turn 3 sees the new context
    segs = led.finish()
    assert [s.prompt_ids for s in segs] == [[1], [1, 5, 20, 84]]
    assert segs[0].prompt_ids + segs[0].response_ids == before[:-1]  # up to the last model token
    assert segs[0].loss_mask == [1, 1, 0, 0, 0, 0, 1]
    assert segs[1].response_ids == [30, 31] and segs[1].loss_mask == [1, 1]


@pytest.mark.parametrize("msg", [0, 2, 3])
def test_delete_refuses_the_prompt_the_current_turn_and_unknown_messages(msg):
    led = TokenLedger([1])
    led.add_model([10], [0.0])
    led.add_observation([80])
    led.add_model([20], [0.0])
    with pytest.raises(ValueError, match="cannot be deleted"):
        led.delete(msg, [5])


def test_delete_twice_is_refused_and_a_segment_without_model_tokens_is_dropped():
    led = TokenLedger([1])
    led.add_model([10], [0.0])
    led.add_observation([80])
    led.add_model([20], [0.0])
    led.add_observation([81])
    led.delete(1, [5])
    with pytest.raises(ValueError):
        led.delete(1, [5])
    assert len(led.finish()) == 1  # nothing generated after the deletion


def test_restart_makes_one_segment_per_fresh_prompt():
    led = TokenLedger([1, 2])
    led.add_model([10], [-0.1])
    led.restart([3, 4, 5])
    led.add_model([11, 12], [-0.2, -0.3])
    segs = led.finish()
    assert [(s.prompt_ids, s.response_ids) for s in segs] == [([1, 2], [10]), ([3, 4, 5], [11, 12])]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="non-empty prompt"):
        TokenLedger([])
    led = TokenLedger([1])
    with pytest.raises(ValueError, match="observation follows a model turn"):
        led.add_observation([2])
    with pytest.raises(ValueError, match="logprobs"):
        led.add_model([1, 2], [0.0])
