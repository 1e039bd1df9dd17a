"""optim ops (being written)."""
__all__ = []
