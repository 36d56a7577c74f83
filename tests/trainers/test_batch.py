import json

import pytest
import torch

from trainers.batch import Batch, Trajectory, collate


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
