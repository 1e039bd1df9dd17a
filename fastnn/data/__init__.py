"""fastnn.data: IDX files, the external shuffler, and fixed-buffer streaming readers.

Knows nothing about models. See idx.py, shuffle.py, shuffled_format.py and stream.py.
"""
from .idx import IdxError, IdxReader, mnist_files, read_idx, read_labeled, write_idx
from .shuffle import write_shuffled
from .shuffled_format import ShuffledFileError
from .stream import IdxBatches, ShuffledStream

__all__ = ["IdxError", "IdxReader", "read_idx", "read_labeled", "write_idx", "mnist_files",
           "write_shuffled", "ShuffledFileError", "ShuffledStream", "IdxBatches"]
