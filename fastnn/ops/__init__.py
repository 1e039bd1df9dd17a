"""fastnn.ops: the validated boundary of the compiled kernels (PyTorch layouts and semantics).

Each function checks shapes and dtypes, allocates its outputs (or takes `out=`), and calls the
compiled kernel with the GIL released. Layers call the compiled modules directly after
validating once at build time, so the training loop pays no per-call checks.
"""
from .activation import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .dense import dense_backward, dense_forward  # noqa: F401
from .loss import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
