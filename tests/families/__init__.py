"""Episode families that exist only in the tests: registered by a fixture, never in cluster/episodes/registry.py."""
