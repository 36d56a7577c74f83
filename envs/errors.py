"""Errors of the environment layer: an environment that cannot be found, a sandbox that cannot run here."""


class UnknownEnvironmentError(KeyError):
    """No builtin of that name and no such .py file."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class SandboxUnavailable(RuntimeError):
    """No sandbox of the asked kind can run here; the message says why and what to do, in one line."""
