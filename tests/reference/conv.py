"""conv oracles (being written)."""
