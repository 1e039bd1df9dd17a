"""loss oracles (being written)."""
