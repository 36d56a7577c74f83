import json

import pytest
import torch

from trainers.batch import Batch, Trajectory, collate, collate_pairs, order_pairs


def two_trajectories():
    t0 = Trajectory([11, 12, 13], [21, 22], [-0.1, -0.2], reward=1.0, advantage=0.5)
    t1 = Trajectory([31], [41, 42, 43], [-1.0, -2.0, -3.0], group_id=3, loss_mask=[1, 0, 1], advantage=-1.0)
    return t0, t1


def test_collate_places_tokens_by_hand():
    b = collate(list(two_trajectories()), pad_id=0)
    # lengths 3+2 = 5 and 1+3 = 4 -> T = 5, right padded with 0
    assert torch.equal(b.input_ids, torch.tensor([[11, 12, 13, 21, 22], [31, 41, 42, 43, 0]]))
    assert torch.equal(b.attention_mask, torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]))
    # row 0: response at input positions 3, 4 -> predicted from positions 2, 3
    # row 1: response at input positions 1, 2, 3 -> predicted from 0, 1, 2; trajectory mask [1, 0, 1]
    assert torch.equal(b.loss_mask, torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 1.0, 0.0]]))
    torch.testing.assert_close(b.old_logprobs, torch.tensor([[0.0, 0.0, -0.1, -0.2], [-1.0, -2.0, -3.0, 0.0]]))
    torch.testing.assert_close(b.advantages, torch.tensor([0.5, -1.0]))
    # the targets at the trained positions are response tokens: input_ids[:, t + 1]
    assert b.input_ids[0, 3].item() == 21 and b.input_ids[0, 4].item() == 22
    assert b.input_ids[1, 1].item() == 41 and b.input_ids[1, 3].item() == 43
    assert b.loss_mask.dtype == torch.float32 and b.input_ids.dtype == torch.long


def test_collate_rejects_bad_input():
    with pytest.raises(ValueError):
        collate([Trajectory([], [1], [-0.5])], pad_id=0)
    with pytest.raises(ValueError):
        collate([Trajectory([1], [2, 3], [-0.5])], pad_id=0)


def five_rows() -> Batch:
    # prompt token i identifies row i
    return collate([Trajectory([100 + i], [7] * (i + 1), [-0.5] * (i + 1), advantage=float(i)) for i in range(5)], pad_id=0)


def test_shard_sizes_and_concatenation():
    b = five_rows()
    assert len(b) == 5
    # 5 rows over 3 ranks -> 2, 2, 1 ; over 2 ranks -> 3, 2 ; 2 rows over 4 ranks -> 1, 1, 0, 0
    assert [len(b.shard(r, 3)) for r in range(3)] == [2, 2, 1]
    assert [len(b.shard(r, 2)) for r in range(2)] == [3, 2]
    small = collate(list(two_trajectories()), pad_id=0)
    assert [len(small.shard(r, 4)) for r in range(4)] == [1, 1, 0, 0]
    for world in (1, 2, 3, 5):
        shards = [b.shard(r, world) for r in range(world)]
        for name in ("input_ids", "attention_mask", "loss_mask", "old_logprobs", "advantages"):
            assert torch.equal(torch.cat([getattr(s, name) for s in shards]), getattr(b, name))
    assert b.shard(1, 3).input_ids[:, 0].tolist() == [102, 103]
    with pytest.raises(ValueError):
        b.shard(3, 3)


def test_micro_batches_and_to():
    b = five_rows()
    mbs = b.micro_batches(2)
    assert [len(m) for m in mbs] == [2, 2, 1]
    assert [m.input_ids[0, 0].item() for m in mbs] == [100, 102, 104]
    moved = b.to("cpu")
    assert torch.equal(moved.advantages, torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]))


def test_trajectory_dict_round_trip():
    t = Trajectory([1, 2], [3], [-0.25], reward=1.5, group_id=4, role="proposer", episode="selfplay",
                   policy_version=7, loss_mask=[1], metadata={"env": "math", "ok": True}, advantage=-0.5)
    d = json.loads(json.dumps(t.to_dict()))
    back = Trajectory.from_dict(d)
    assert back == t
    d["metadata"]["env"] = "changed"
    assert back.metadata["env"] == "math"  # no aliasing of the source dict


def test_trajectory_round_trip_with_round2_fields():
    t = Trajectory([1], [2, 3], [], token_advantages=[0.5, -0.25], pair_id=7, chosen=False)
    back = Trajectory.from_dict(json.loads(json.dumps(t.to_dict())))
    assert back == t and back.token_advantages == [0.5, -0.25] and back.pair_id == 7 and back.chosen is False
    old = {"prompt_ids": [1], "response_ids": [2], "behaviour_logprobs": [-0.5]}  # a dict from before the fields
    assert Trajectory.from_dict(old).token_advantages is None and Trajectory.from_dict(old).pair_id is None


def test_token_advantages_placed_at_targets_and_scalar_fill():
    # row 0 (prompt 3, response 2) has per-token advantages [0.5, -2]; row 1 (prompt 1, response 3) only the
    # scalar -1, which fills its response positions
    t0 = Trajectory([11, 12, 13], [21, 22], [-0.1, -0.2], advantage=9.0, token_advantages=[0.5, -2.0])
    t1 = Trajectory([31], [41, 42, 43], [-1.0, -2.0, -3.0], advantage=-1.0)
    b = collate([t0, t1], pad_id=0)
    torch.testing.assert_close(b.token_advantages, torch.tensor([[0.0, 0.0, 0.5, -2.0], [-1.0, -1.0, -1.0, 0.0]]))
    torch.testing.assert_close(b.advantages, torch.tensor([9.0, -1.0]))
    assert collate([t1], pad_id=0).token_advantages is None  # absent when no trajectory has them
    with pytest.raises(ValueError, match="token_advantages"):
        collate([Trajectory([1], [2, 3], [-1.0, -1.0], token_advantages=[1.0])], pad_id=0)
    # slicing carries them along
    assert torch.equal(b.shard(1, 2).token_advantages, b.token_advantages[1:])


def test_unknown_behaviour_logprobs_only_where_unused():
    sft = Trajectory([5, 6], [7, 8, 9], [])  # [] = unknown
    with pytest.raises(ValueError, match="behaviour_logprobs"):
        collate([sft], pad_id=0)  # grpo needs them
    b = collate([sft], pad_id=0, require_behaviour=False)
    assert torch.equal(b.old_logprobs, torch.zeros(1, 4)) and b.loss_mask.tolist() == [[0.0, 1.0, 1.0, 1.0]]
    with pytest.raises(ValueError, match="behaviour_logprobs"):  # a given list must still match the response
        collate([Trajectory([5], [7, 8], [-1.0])], pad_id=0, require_behaviour=False)


def _pair(pid, chosen, token):
    return Trajectory([100 + pid], [token], [], pair_id=pid, chosen=chosen)


def test_collate_pairs_orders_chosen_then_rejected():
    # pairs in order of first appearance (4 then 2), chosen row first whatever the input order
    ts = [_pair(4, False, 40), _pair(2, True, 21), _pair(4, True, 41), _pair(2, False, 20)]
    b = collate_pairs(ts, pad_id=0)
    assert b.unit == 2 and b.units == 2 and len(b) == 4
    assert b.input_ids.tolist() == [[104, 41], [104, 40], [102, 21], [102, 20]]
    assert order_pairs(ts) == [ts[2], ts[0], ts[1], ts[3]]


@pytest.mark.parametrize("ts, message", [
    ([_pair(1, True, 5)], "pair 1 has 1 chosen and 0 rejected"),
    ([_pair(1, True, 5), _pair(1, True, 6)], "pair 1 has 2 chosen and 0 rejected"),
    ([_pair(1, True, 5), _pair(1, False, 6), _pair(1, False, 7)], "pair 1 has 1 chosen and 2 rejected"),
    ([Trajectory([1], [2], [], chosen=True)], "pair_id=None"),
    ([Trajectory([1], [2], [], pair_id=3)], "chosen=None"),
])
def test_collate_pairs_refuses_bad_pairs(ts, message):
    with pytest.raises(ValueError, match=message):
        collate_pairs(ts, pad_id=0)


def test_units_are_never_split():
    b = collate_pairs([_pair(p, c, 10 * p + c) for p in range(5) for c in (True, False)], pad_id=0)
    # 5 pairs over 2 ranks: 3 and 2 pairs; micro batches of at most 3 rows hold one pair (2 rows) each,
    # and a size below a pair still holds a whole pair
    assert [len(b.shard(r, 2)) for r in range(2)] == [6, 4]
    assert [len(m) for m in b.micro_batches(3)] == [2] * 5 and [len(m) for m in b.micro_batches(1)] == [2] * 5
    assert [len(m) for m in b.micro_batches(4)] == [4, 4, 2]
    assert [p.units for p in b.split(3)] == [2, 2, 1] and [p.units for p in b.split(7)] == [1] * 5 + [0] * 2
    with pytest.raises(ValueError, match="units of 2"):
        Batch(b.input_ids[:3], b.attention_mask[:3], b.loss_mask[:3], b.old_logprobs[:3], b.advantages[:3], unit=2)


def test_padding_rows_copy_a_unit_with_nothing_to_learn():
    b = collate([Trajectory([3, 4], [5, 6], [-0.5, -0.5], advantage=2.0, token_advantages=[1.0, 1.0]),
                 Trajectory([7], [8], [-0.1], advantage=-1.0)], pad_id=0)
    pad = b.padding(2)
    assert len(pad) == 2 and torch.equal(pad.input_ids, b.input_ids[[0, 0]])
    assert not pad.loss_mask.any() and not pad.advantages.any() and not pad.token_advantages.any()
    assert pad.valid.tolist() == [0.0, 0.0] and b.valid_rows().tolist() == [1.0, 1.0]
    pairs = collate_pairs([_pair(0, True, 1), _pair(0, False, 2), _pair(1, True, 3), _pair(1, False, 4)], 0)
    assert pairs.padding().input_ids.tolist() == [[100, 1], [100, 2]] and pairs.padding().unit == 2


def test_by_length_and_trimmed_keep_every_row_and_drop_only_padding():
    ts = [Trajectory([1, 2], [3] * n, [-0.5] * n, advantage=float(n)) for n in (1, 5, 3, 7)]
    batch = collate(ts, pad_id=0)
    ordered = batch.by_length()
    assert ordered.advantages.tolist() == [7.0, 5.0, 3.0, 1.0]
    assert ordered.attention_mask.sum(1).tolist() == [9, 7, 5, 3]
    short = ordered._rows(2, 4).trimmed()  # the two short rows: columns past their longest row go
    assert short.input_ids.shape == (2, 5) and short.loss_mask.shape == (2, 4)
    assert short.input_ids.tolist() == [[1, 2, 3, 3, 3], [1, 2, 3, 0, 0]]
    assert short.loss_mask.sum().item() == 4 and short.old_logprobs.sum().item() == -2.0
    assert ordered._rows(0, 2).trimmed() is not None and batch.trimmed().input_ids.shape == batch.input_ids.shape
    pairs = [Trajectory([1], [2] * n, [], pair_id=i // 2, chosen=i % 2 == 0) for i, n in enumerate((1, 2, 6, 1))]
    by_pair = collate_pairs(pairs, 0).by_length()  # a pair moves as one unit, by its longer row
    assert by_pair.attention_mask.sum(1).tolist() == [7, 2, 2, 3]


def test_has_signal_follows_the_advantages_the_loss_uses():
    def traj(advantage=0.0, token_advantages=None):
        return Trajectory([1], [2, 3], [0.0, 0.0], advantage=advantage, token_advantages=token_advantages)

    assert traj(0.5).has_signal() and traj(-0.1).has_signal() and not traj(0.0).has_signal()
    # per-token advantages replace the scalar one in the grpo loss, so they alone decide
    assert traj(0.0, [0.0, 0.2]).has_signal()
    assert not traj(0.7, [0.0, 0.0]).has_signal()
