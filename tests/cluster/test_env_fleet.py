"""The executor fleet on a real Ray cluster: admission control, and nothing lost when a sandbox
worker or a whole EnvExecutor actor dies in the middle of a call."""
import os
import signal
import threading
from types import SimpleNamespace

import pytest
import ray

from cluster.config.schema import EnvConfig, SandboxConfig
from cluster.runtime.env_fleet import EnvFleet

SLOW = '''class Slow:
    name = "slow"
    def sample(self, rng, difficulty):
        return {"v": rng.randrange(1000)}
    def prompt(self, inst):
        return "v?"
    def reference(self, inst):
        return str(inst["v"])
    def score(self, inst, response):
        for _ in range(30000000 if response == "hang" else 0):  # seconds of work: keeps a worker busy
            pass
        for _ in range(1500000):  # about 50-100 ms of work per item
            pass
        return float(response.strip() == str(inst["v"]))
'''


@pytest.fixture
def fleet(ray_local, tmp_path):
    path = tmp_path / "slow.py"
    path.write_text(SLOW)
    cfg = SimpleNamespace(env=EnvConfig(name=str(path), num_executors=2, workers_per_executor=2,
                                        cpus_per_executor=0.5, max_in_flight=4, sandbox=SandboxConfig(wall_s=10)))
    f = EnvFleet(cfg, "PACK")
    yield f
    for e in f.executors:
        ray.kill(e)
    from ray.util.placement_group import remove_placement_group
    remove_placement_group(f.pg)


def items(fleet, n):
    insts = fleet.sample(list(range(n)), 1)
    return [{"data": i["data"], "response": i["reference"]} for i in insts]


def test_admission_control_queues_the_burst(fleet):
    scores, metrics = fleet.score(items(fleet, 40))
    assert scores == [1.0] * 40
    assert metrics["env/verdict_ok"] == 40
    assert metrics["env/queue_depth"] == 40 - 2 * 4  # two executors x 4 in flight admitted at once
    assert metrics["env/executions_per_s"] > 0


def test_executor_killed_mid_call_is_replaced_and_nothing_lost(fleet):
    work = [{"data": {"v": 1}, "response": "hang"}] * 4 + items(fleet, 44)  # slow items keep executor 0 busy
    victim = fleet.executors[0]
    killer = threading.Timer(0.5, lambda: ray.kill(victim))
    killer.start()
    scores, metrics = fleet.score(work)
    killer.join()
    assert len(scores) == 48 and scores == [0.0] * 4 + [1.0] * 44  # retried on the replacement
    assert metrics["env/executors_replaced"] >= 1
    assert fleet.executors[0] is not victim
    assert fleet.score(work[4:8])[0] == [1.0] * 4


def test_sandbox_worker_killed_mid_call_is_reported_and_restarted(fleet):
    work = [{"data": {"v": 1}, "response": "hang"}] * 4 + items(fleet, 20)  # executor 0 gets the 4 slow items
    pids = [p for p in ray.get(fleet.executors[0].worker_pids.remote()) if p]
    assert pids
    killer = threading.Timer(0.5, lambda: os.kill(pids[0], signal.SIGKILL))
    killer.start()
    scores, metrics = fleet.score(work)
    killer.join()
    assert len(scores) == 24
    crashed = metrics.get("env/verdict_crashed", 0)
    # the chunk that held the killed worker is re-run item by item: retried (ok) or reported (crashed)
    assert crashed <= 1 and metrics["env/verdict_ok"] + crashed == 24  # every item accounted for
    assert scores[4:] == [1.0] * 20
    stats = ray.get(fleet.executors[0].stats.remote())
    assert stats["restarts"] >= 1
    assert fleet.score(work[4:])[0] == [1.0] * 20  # the pool serves again


def test_an_executor_without_a_sandbox_fails_the_fleet_in_one_line(ray_local, tmp_path):
    """On a cluster the executors may sit on other nodes than the driver: the driver cannot check their
    sandbox itself, so an executor that has none says so, naming itself and its node, and the fleet
    raises that line (no actor-creation traceback). Here: the unisolated backend without its opt-in."""
    from envs.errors import SandboxUnavailable
    from ray.util.placement_group import placement_group_table

    before = set(placement_group_table())
    cfg = SimpleNamespace(env=EnvConfig(num_executors=1, cpus_per_executor=0.5,
                                        sandbox=SandboxConfig(backend="process")))
    with pytest.raises(SandboxUnavailable, match=r"^environment executor 0 on .+: env.sandbox.backend=process") as e:
        EnvFleet(cfg, "PACK")
    assert "\n" not in str(e.value) and "allow_unisolated=true" in str(e.value)
    table = placement_group_table()
    assert all(table[pg]["state"] == "REMOVED" for pg in set(table) - before)  # its reservation is released
