"""The broadcast group used for weight sync, on gloo: two members in two threads of this process."""
import socket
import threading

import pytest
import torch

from actors.sync_group import SyncGroup, flat_buffer
from actors.weights import manifest, unpack_flat


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_pair(send, receive):
    """Rank 0 runs `send(group)`, rank 1 `receive(group)`; returns (rank 1's result or exception)."""
    port, out = _port(), {}

    def member(rank):
        try:
            group = SyncGroup("127.0.0.1", port, rank, 2, "gloo", timeout_s=30)
            out[rank] = (send if rank == 0 else receive)(group)
        except Exception as e:  # noqa: BLE001 - reported to the test
            out[rank] = e
    threads = [threading.Thread(target=member, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a member hung"
    return out


def test_broadcast_round_trip_mixed_dtypes():
    state = {"w": torch.randn(4, 3), "b": torch.arange(5, dtype=torch.int64), "h": torch.randn(6).bfloat16()}
    msg = manifest(state, 0)
    out = _run_pair(lambda g: g.send(flat_buffer(state, g.device), 3),
                    lambda g: unpack_flat(msg, g.receive(3, msg.nbytes)))
    assert out[0] is None
    got = out[1]
    assert set(got) == set(state) and all(torch.equal(got[k], v) for k, v in state.items())


@pytest.mark.parametrize("expected, nbytes, error", [(4, None, "carried version 3, expected 4"),
                                                     (3, 7, "carried 48 bytes, the manifest says 7")])
def test_receiver_refuses_wrong_version_or_size(expected, nbytes, error):
    state = {"w": torch.randn(4, 3)}
    out = _run_pair(lambda g: g.send(flat_buffer(state, g.device), 3),
                    lambda g: g.receive(expected, nbytes or 48))
    assert out[0] is None  # the sender is not left hanging
    assert isinstance(out[1], ValueError) and error in str(out[1])


def test_unknown_backend_named():
    with pytest.raises(ValueError, match="'mpi'"):
        SyncGroup("127.0.0.1", _port(), 0, 1, "mpi", timeout_s=5)
