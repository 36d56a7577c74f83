"""keyword_sentence: write one sentence that uses every given word. Many answers are right, and they differ.

Instance: {"words": [w1, ..., wk]} with k = difficulty + 1 words (difficulty below 1 counts as 1), drawn without
replacement from a list of common nouns and adjectives. Prompt: "Write one short sentence that uses all of these
words: river, blue." Reference: a plain sentence that lists them.

Score: 1.0 when every given word appears in the response as a whole word (any case; a plural "s" or "es" counts),
else 0.0. Only the first line is read: text after it does not count.

Why it exists: right answers are spread out (two right sentences are rarely the same text), so majority vote over
sampled answers picks almost at random, while checking an answer is a matter of finding the words in it, which a
critic that reads the candidates can learn (Propose-then-Critic's text counterpart of click points dispersed over
a screenshot). Show it without few-shot examples (env.fewshot=0): a model copies the examples' frame, and
copies of one frame agree, which hands majority vote the win.

Self-contained on purpose (stdlib only, no project imports): environment files are loaded from their source
text inside a worker process.
"""
import random
import re

WORDS = ["river", "blue", "apple", "window", "garden", "cold", "music", "horse", "paper", "green", "bread",
         "mountain", "quiet", "lamp", "ocean", "yellow", "dog", "winter", "clock", "sugar", "forest", "red",
         "bottle", "happy", "train", "cloud", "stone", "small", "bird", "letter", "chair", "bright", "road",
         "salt", "teacher", "heavy", "moon", "coffee", "kitchen", "soft"]


class KeywordSentence:
    name = "keyword_sentence"
    description = "Write one short sentence that uses every given word."
    answer_format = "raw"  # the sentence itself is the answer

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        return {"words": rng.sample(WORDS, max(1, int(difficulty)) + 1)}

    def prompt(self, instance: dict) -> str:
        return f"Write one short sentence that uses all of these words: {', '.join(instance['words'])}."

    def reference(self, instance: dict) -> str:
        words = instance["words"]
        return f"I thought of {', '.join(words[:-1])} and {words[-1]}."

    def score(self, instance: dict, response: str) -> float:
        lines = [ln for ln in response.strip().splitlines() if ln.strip()]
        if not lines:
            return 0.0
        found = set(re.findall(r"[a-z]+", lines[0].lower()))
        ok = all(w in found or w + "s" in found or w + "es" in found for w in instance["words"])
        return 1.0 if ok else 0.0
