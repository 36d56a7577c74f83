"""The pytest run's shared Ray head (tests/ray_head.py): what a run leaves on it is seen, and what a
finished driver made is released. The check after every end-to-end test relies on both."""
import subprocess
import sys
import textwrap
import time

import pytest

from tests import ray_head
from tests.ray_head import ROOT, shared_head

LEAVE = textwrap.dedent("""
    import sys, ray
    from ray.util.placement_group import placement_group
    ray.init(address=sys.argv[1], namespace="evoforge-tests-leftover")

    @ray.remote(num_cpus=0)
    class Holder:
        def ping(self):
            return "pong"

    kept = Holder.options(name="kept", lifetime="detached").remote()  # outlives its driver, as a leak would
    gone = Holder.remote()                                             # goes with its driver's job
    assert ray.get([kept.ping.remote(), gone.ping.remote()]) == ["pong", "pong"]
    pg = placement_group([{"CPU": 0.1}], lifetime="detached", name="kept-pg")
    ray.get(pg.ready())
    print("ready", flush=True)
""")


def _wait(head, until, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        actors, groups = ray_head.live_resources(head)
        if until(actors, groups) or time.monotonic() > deadline:
            return actors, groups
        time.sleep(0.5)


def test_what_a_finished_driver_leaves_is_listed_and_the_rest_released():
    head = shared_head()
    proc = subprocess.run([sys.executable, "-c", LEAVE, head.gcs], cwd=ROOT, env=head.client_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ready" in proc.stdout, proc.stderr[-3000:]
    try:
        # the driver has exited: its job's own actor goes, the detached actor and group stay and are listed
        actors, groups = _wait(head, lambda a, g: len(a) == 1)
        assert [(a.class_name, a.name) for a in actors] == [("Holder", "kept")]
        assert [g.name for g in groups] == ["kept-pg"]
    finally:
        import ray

        connected = ray.is_initialized()
        if not connected:
            ray.init(address=head.gcs, namespace="evoforge-tests-leftover")
        try:
            ray.kill(ray.get_actor("kept", namespace="evoforge-tests-leftover"))
            from ray.util.placement_group import get_placement_group, remove_placement_group

            remove_placement_group(get_placement_group("kept-pg"))
        finally:
            if not connected:
                ray.shutdown()
    actors, groups = _wait(head, lambda a, g: not a and not g)
    assert not actors and not groups


@pytest.mark.e2e
def test_an_in_process_run_releases_everything_when_its_driver_disconnects(tmp_path):
    """A driver in this process (tests.conftest.train_in_process) is its own job: the run's actors and
    placement groups are gone once it returns, and this process is no longer a Ray driver."""
    import ray

    from tests.cluster.test_e2e import metrics, train

    train(tmp_path / "run", "steps=1", "save_every=0")
    assert not ray.is_initialized()
    assert [r["step"] for r in metrics(tmp_path / "run")] == [0]
    actors, groups = _wait(shared_head(), lambda a, g: not a and not g)
    assert not actors and not groups
