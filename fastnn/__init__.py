"""fastnn: neural networks with Cython + OpenMP kernels for small CPU-only machines."""
from ._runtime import get_num_threads, info, set_num_threads
from . import ops

__all__ = ["ops", "set_num_threads", "get_num_threads", "info"]
