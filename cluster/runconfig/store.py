"""The schema Hydra checks conf/ and the command line against: the shared groups (schema.py) and every
registered family's settings (cluster/episodes/registry.py), stored in Hydra's ConfigStore."""
from __future__ import annotations

from dataclasses import field, make_dataclass

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from cluster.config.schema import (AlgorithmConfig, ClusterConfig, EnvConfig, LearnerConfig, ModelConfig,
                                   RolloutConfig, TrainConfig)
from cluster.episodes.registry import FAMILIES

OPEN_DICTS = {EnvConfig: ("rg_config",)}  # dict fields that take new keys without `+`
GROUPS: dict[str, type] = {
    "model": ModelConfig,
    "rollout": RolloutConfig,
    "learner": LearnerConfig,
    "algorithm": AlgorithmConfig,
    "env": EnvConfig,
    "cluster": ClusterConfig,
}


def register_configs() -> None:
    """Register the schema and one schema per group, so conf/*.yaml are type-checked."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=run_schema())
    groups = {**GROUPS, **{f.group: f.config for f in FAMILIES.values() if f.group}}
    for group, node in groups.items():
        cs.store(group=group, name=f"{group}_schema", node=_open_dicts(node))


def run_schema() -> type:
    """TrainConfig with every registered family's settings: `episodes.<name>` for most, a top-level group of its
    own (conf/<group>/) for a family that declares one."""
    families = [f for f in FAMILIES.values() if f.config is not None]
    episodes = make_dataclass("EpisodesConfig", [(f.name, f.config, field(default_factory=f.config))
                                                 for f in families if not f.group])
    groups = [(f.group, f.config, MISSING) for f in families if f.group]
    return make_dataclass("RunConfig", [*groups, ("episodes", episodes, field(default_factory=episodes))],
                          bases=(TrainConfig,))


def _open_dicts(node: type):
    """The group's schema, with its free-form dict fields (env.rg_config) open to new keys on the command
    line (`env.rg_config.max_digits=1`, no `+`); everything else stays strict."""
    from omegaconf import OmegaConf

    open_fields = OPEN_DICTS.get(node, ())
    if not open_fields:
        return node
    conf = OmegaConf.structured(node)
    for name in open_fields:
        OmegaConf.set_struct(conf[name], False)
    return conf
