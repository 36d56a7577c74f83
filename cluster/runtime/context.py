"""Context: what every episode gets handles to. It builds every actor of a run: the environment fleet,
one rollout pool and learner group per policy, and the judge pool. A family's set-up adds its own parts (a task
source, stand-ins, judges) before the first step."""
from __future__ import annotations

from pathlib import Path

from cluster.config.errors import ConfigError
from cluster.config.schema import DEFAULT_POLICY, resolve_judges, resolve_policies
from cluster.config.seeds import step_instances
from cluster.evaluation.heldout import fewshot_examples
from cluster.runtime.policy import Policy, ScriptedPolicy
from cluster.runtime.tasks import EnvTasks
from trainers.advantages import EMABaseline, role_advantages


class Context:
    def __init__(self, cfg, run_dir: Path, resume_from: Path | None):
        from cluster.runtime.env_fleet import EnvFleet

        self.cfg, self.run_dir, self.resume_from = cfg, run_dir, resume_from
        strategy = cfg.cluster.placement_strategy
        self.roles = dict(cfg.roles)
        # every policy's actors load while the executors start; then each policy's learners join their group
        self.policies = {name: Policy(name, cfg, pcfg, pcfg.placement_strategy or strategy, start=False)
                         for name, pcfg in resolve_policies(cfg).items()}
        self.env = EnvFleet(cfg, strategy)
        for policy in self.policies.values():
            policy.start()
        self.stand_ins: dict[str, ScriptedPolicy] = {}  # role -> scripted responses in place of sampling
        for role, responses in cfg.scripted.items():  # fixed responses in place of the role's samples
            self.stand_ins[role] = ScriptedPolicy(self.policy(role), [str(r) for r in responses])
        self.judges = self._judges()
        decay = cfg.algorithm.ema_baseline
        self.baseline = EMABaseline(decay) if decay > 0 else None  # per-role reward EMA (SPIRAL's RAE)
        self._shots: dict[tuple[str, int], list[tuple[str, str]]] = {}
        self.tasks = EnvTasks(self.env, cfg.env.difficulty)  # what the `task` episode trains the solver on
        self.parts: dict[str, object] = {}  # family name -> what its set-up added; each saved with a checkpoint

    # -- roles -> policies -----------------------------------------------------------
    def policy_name(self, role: str) -> str:
        if role in self.roles:
            return self.roles[role]
        if len(self.policies) == 1:
            return next(iter(self.policies))
        raise ConfigError(f"role '{role}' is not mapped to a policy: set roles.{role}=<one of "
                          f"{', '.join(self.policies)}>")

    def policy(self, role: str):
        return self.stand_ins.get(role) or self.policies[self.policy_name(role)]

    # -- judges ------------------------------------------------------------------------
    def _judges(self) -> dict:
        specs = resolve_judges(self.cfg)
        if not specs:
            return {}
        from cluster.runtime.judges import JudgePool

        return {name: JudgePool(name, jc, self.cfg.cluster.placement_strategy, self.cfg.model)
                for name, jc in specs.items()}

    # -- shared by episodes --------------------------------------------------------------
    def shots(self, env_id: str | None, difficulty: int) -> list[tuple[str, str]]:
        """env.fewshot solved examples of the run's environment (env.name) at a difficulty: (prompt, reference
        answer) of instances at seeds nothing trains or evaluates on; the same for every prompt (and cached).
        Other environments (a self-play library's seeds and proposals) get none."""
        k = self.cfg.env.fewshot
        if k <= 0 or (env_id is not None and env_id != self.env.name):
            return []
        key = (self.env.name, int(difficulty))
        if key not in self._shots:
            self._shots[key] = fewshot_examples(self.env, key[0], key[1], k)
        return self._shots[key]

    def data_seeds(self, step: int) -> list[int]:
        """Instance seeds are a function of (seed, step): resuming needs no sampler state."""
        return step_instances(self.cfg.seed, step, self.cfg.algorithm.prompts_per_step)

    def set_advantages(self, role: str, trajectories: list) -> None:
        """Group-relative advantages over the role's responses to each prompt; with algorithm.ema_baseline a
        response alone in its group gets reward minus the role's moving-average reward."""
        advantages = role_advantages([t.reward for t in trajectories], [role] * len(trajectories),
                                     [t.group_id for t in trajectories],
                                     normalize_std=self.cfg.algorithm.normalize_std, baseline=self.baseline)
        for t, a in zip(trajectories, advantages.tolist()):
            t.advantage = a

    def versions(self) -> dict[str, int]:
        return {name: p.version for name, p in self.policies.items()}

    def metrics(self) -> dict:
        out = {}
        for judge in self.judges.values():
            out.update(judge.metrics())
        if len(self.policies) > 1:
            out.update({f"policy_version/{name}": v for name, v in self.versions().items()})
        return out

    # -- checkpoints -----------------------------------------------------------------------
    def policy_folder(self, folder: Path, name: str) -> Path:
        """A run without `policies` keeps the single-policy layout (step_N/{hf,deepspeed})."""
        if not self.cfg.policies and name == DEFAULT_POLICY:
            return folder
        return folder / "policies" / name

    def save(self, folder: Path) -> None:
        for name, policy in self.policies.items():
            policy.save(self.policy_folder(folder, name))
        for part in self.parts.values():
            part.save(folder)

    def load(self, folder: Path, state: dict) -> None:
        versions = state.get("versions") or {DEFAULT_POLICY: state["version"]}
        missing = [n for n in self.policies if n not in versions]
        if missing:
            raise ConfigError(f"resume={folder}: the checkpoint has no policy {missing[0]!r} "
                              f"(it holds {', '.join(versions)})")
        for name, policy in self.policies.items():
            policy.load(self.policy_folder(folder, name), versions[name])
        if self.baseline is not None and state.get("baseline"):
            self.baseline.load_state_dict(state["baseline"])

    def state(self) -> dict:
        """What driver.json carries besides the step: every policy's version and the reward baselines."""
        versions = self.versions()
        out = {"version": max(versions.values()), "versions": versions}
        if self.baseline is not None:
            out["baseline"] = self.baseline.state_dict()
        return out
