"""A judge: a rollout worker serving another model, asked strict yes/no questions (the L4 review)."""
from __future__ import annotations

import ray

from actors.rollout_worker import RolloutWorker
from cluster.placement import bundle, on_bundle, reserve
from trainers.models import encode_prompt, load_tokenizer, prepare_model


class Judge:
    def __init__(self, cfg, model: str):
        from dataclasses import replace

        mcfg = replace(cfg.model, name=model)
        self.path, self.chat_template = prepare_model(mcfg), cfg.model.chat_template
        self.tokenizer = load_tokenizer(self.path)
        rc = cfg.rollout
        self.pg = reserve("judge", [bundle(rc.cpus_per_worker, rc.gpus_per_worker)], cfg.cluster.placement_strategy)
        self.worker = RolloutWorker.options(**on_bundle(self.pg, 0)).remote(
            0, self.path, rc.backend, cfg.model.dtype, rc.threads)

    def ask(self, questions: list[str], sampling) -> list[str]:
        prompts = [encode_prompt(self.tokenizer, q, self.chat_template) for q in questions]
        out = ray.get(self.worker.generate.remote(prompts, sampling, 0))
        return [g[0].text for g in out["samples"]]

