"""Starter environments: six short, easy tasks in one plain style (``seed_environments("starters")``).

A self-play library can start from them (``selfplay.seed_set=starters``) where the policy is small: a
135M model solves some of their instances, and files this short are ones it can write whole. Each
passes L1-L3 and the novelty gate against every other seed (tests/envs/test_novelty.py).
"""
