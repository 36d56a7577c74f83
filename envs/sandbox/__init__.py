"""Sandboxes for untrusted environment code, behind one pool interface.

Backends: "bwrap" (bubblewrap; what "auto" means), "docker" (for clusters), and
"process" (plain subprocesses, NOT isolated). Environment code never runs
unisolated by default: "process" needs ``allow_unisolated=True`` in so many
words, and "auto" never falls back to it.
"""
