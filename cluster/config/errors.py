"""The error a bad configuration raises: one line naming the key and what is wrong with it."""


class ConfigError(ValueError):
    pass


def failed(*checks: tuple[bool, str]) -> list[str]:
    """The messages of the checks that fail, in order: a family's `check` returns these."""
    return [message for ok, message in checks if not ok]
