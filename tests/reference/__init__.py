"""Plain numpy oracles for every kernel: slow, obvious, independent of the compiled code.
One module per kernel family; everything is re-exported here as `reference.<name>`."""
from .common import *  # noqa: F401,F403
from .dense import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .activation import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .net import *  # noqa: F401,F403
