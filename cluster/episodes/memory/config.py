"""The memory families' settings (episodes.memory: memory_agent, memory_expert, memagent) and their checks."""
from __future__ import annotations

from dataclasses import dataclass, field

from cluster.config.errors import failed


@dataclass
class MemoryConfig:
    """Memory-agent episodes (memory_agent, memory_expert, memagent): procedural long-document QA
    (envs/longdoc.py) answered with the memory tools (envs/tools/) over many turns."""
    kinds: list[str] = field(default_factory=lambda: ["needle", "multihop", "count"])
    lengths: list[int] = field(default_factory=lambda: [2000, 8000, 32000, 64000])  # document words
    tasks_per_step: int = 0  # 0: algorithm.prompts_per_step; each task gets rollout.sampling.n episodes
    expert_tasks_per_step: int = 0  # memory_expert's tasks (one episode each); 0: as tasks_per_step
    max_turns: int = 12
    max_context: int = 2048  # tokens the agent sees plus one turn's output (<= rollout.max_model_len)
    turn_max_new_tokens: int = 96
    max_malformed: int = 3  # malformed tool calls before an episode stops
    tool_descriptions: bool = True  # the prompt lists each tool with a description (false: signatures only)
    tool_timeout_s: float = 5.0
    context_penalty: float = 0.0  # reward -= penalty * peak context / max_context
    heldout_tasks: int = 0  # held-out tasks (cycling kinds x lengths) measured before and after
    heldout_baselines: list[str] = field(default_factory=lambda: ["truncated", "memagent"])
    baselines_after: bool = True  # the baselines again after training (false: before only, as reference points)
    truncated_words: int = 1000  # the one-turn baseline reads the document's first words
    answer_max_new_tokens: int = 16
    expert_chunk_size: int = 200  # the scripted expert's buildIndex arguments
    expert_overlap: int = 20
    expert_reasoning: bool = True  # the expert writes one reason line before each call (false: calls only)
    # the expert notes a read chunk's facts and deletes the chunk once the context passes this fraction of
    # max_context (0: after every read)
    expert_free_context_at: float = 0.0
    stop_at_call_end: bool = True  # generation stops at </tool_call> (no text after the call)
    memagent_chunk_words: int = 400
    memagent_memory_tokens: int = 64  # the memory it overwrites after each chunk
    memagent_max_chunks: int = 16  # reads at most this many chunks, then answers

    def check(self, cfg, policies: dict, judges: dict) -> list[str]:
        from envs.longdoc import KINDS

        where = "episodes.memory"
        agent = policies[cfg.roles.get("agent", next(iter(policies)))]
        return failed(
            (bool(self.kinds) and all(k in KINDS for k in self.kinds),
             f"{where}.kinds={list(self.kinds)}: use some of {', '.join(KINDS)}"),
            (bool(self.lengths) and all(200 <= n <= 200_000 for n in self.lengths),
             f"{where}.lengths={list(self.lengths)}: document lengths in words, each in 200..200000"),
            *((getattr(self, key) >= 1, f"{where}.{key}={getattr(self, key)}: must be at least 1")
              for key in ("max_turns", "max_context", "turn_max_new_tokens", "max_malformed", "answer_max_new_tokens",
                          "truncated_words", "memagent_chunk_words", "memagent_memory_tokens", "memagent_max_chunks")),
            (min(self.tasks_per_step, self.expert_tasks_per_step, self.heldout_tasks) >= 0,
             f"{where}.tasks_per_step, expert_tasks_per_step and heldout_tasks must be >= 0"),
            (0.0 <= self.expert_free_context_at <= 1.0,
             f"{where}.expert_free_context_at={self.expert_free_context_at}: a fraction of max_context in [0, 1]"),
            (self.tool_timeout_s > 0, f"{where}.tool_timeout_s={self.tool_timeout_s}: must be > 0"),
            (self.context_penalty >= 0, f"{where}.context_penalty={self.context_penalty}: must be >= 0"),
            (16 <= self.expert_chunk_size and 0 <= self.expert_overlap < self.expert_chunk_size,
             f"{where}.expert_chunk_size={self.expert_chunk_size}, expert_overlap={self.expert_overlap}: need chunk "
             "size >= 16 and 0 <= overlap < chunk size"),
            *((name in ("truncated", "memagent"),
               f"{where}.heldout_baselines: unknown {name!r}: use truncated, memagent") for name in self.heldout_baselines),
            (self.max_context <= agent.rollout.max_model_len,
             f"{where}.max_context={self.max_context} exceeds the agent's rollout.max_model_len="
             f"{agent.rollout.max_model_len}: raise max_model_len or lower max_context"),
            (self.turn_max_new_tokens < self.max_context,
             f"{where}.turn_max_new_tokens={self.turn_max_new_tokens} must be below max_context={self.max_context}"))
