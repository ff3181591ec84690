"""Prompt selection: pure functions that pick masks among those already found (no network)."""
