"""pool oracles (being written)."""
