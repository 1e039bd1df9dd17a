"""activation oracles (being written)."""
