"""Checkpoint lookup and pruning: only complete checkpoints (driver.json written last) count."""
import pytest

from cluster.rundir import checkpoint as ckpt
def make(run, step, complete=True):
    folder = ckpt.checkpoint_dir(run, step)
    folder.mkdir(parents=True)
    if complete:
        ckpt.write_driver_state(folder, {"step": step, "version": step})
    return folder


def test_find_latest_complete(tmp_path):
    make(tmp_path, 5)
    latest = make(tmp_path, 10)
    make(tmp_path, 15, complete=False)  # interrupted while saving
    assert ckpt.find_checkpoint(str(tmp_path)) == latest
    assert ckpt.find_checkpoint(str(latest)) == latest
    assert ckpt.read_driver_state(latest) == {"step": 10, "version": 10}


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ckpt.ResumeError, match="no complete checkpoint"):
        ckpt.find_checkpoint(str(tmp_path))
    make(tmp_path, 3, complete=False)
    with pytest.raises(ckpt.ResumeError):
        ckpt.find_checkpoint(str(tmp_path))


def test_prune_keeps_newest(tmp_path):
    for step in (1, 2, 3, 4):
        make(tmp_path, step)
    ckpt.prune(tmp_path, keep=2)
    left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert left == ["step_000003", "step_000004"]
