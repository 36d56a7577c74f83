"""The error a bad configuration raises: one line naming the key and what is wrong with it."""


class ConfigError(ValueError):
    pass
