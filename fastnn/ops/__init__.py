"""fastnn.ops: the validated boundary of the compiled kernels (PyTorch layouts and semantics)."""
from .dense import dense_backward, dense_forward

__all__ = ["dense_forward", "dense_backward"]
