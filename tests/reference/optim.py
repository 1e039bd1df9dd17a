"""optim oracles (being written)."""
