class Broken:
    def sample(self, rng, difficulty:
        return {}
