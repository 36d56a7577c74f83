import random
import re

WORDS = ["cat", "house", "river", "mountain", "pen", "garden", "sun", "window", "apple", "computer",
         "tree", "bicycle", "book", "elephant", "door", "umbrella", "fish", "library", "cup", "keyboard"]


class Env:
    name = "first_letter"

    def sample(self, rng: random.Random, difficulty: int):
        return {"words": rng.sample(WORDS, 1 + difficulty)}

    def prompt(self, instance):
        words = ", ".join(instance["words"])
        return f"Write the first letter of each word, together as one word: {words}. Answer with that word only."

    def reference(self, instance):
        return "".join(w[0] for w in instance["words"])

    def score(self, instance, response):
        words = re.findall(r"[a-z]+", response.lower())
        return 1.0 if words and words[-1] == self.reference(instance) else 0.0
