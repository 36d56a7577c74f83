"""Adapters turning external task libraries into EvoForge environment sources."""
