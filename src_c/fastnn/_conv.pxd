# The declarations of src_c/conv.pxd under the module's run-time name (fastnn._conv): without
# it Cython would not match conv.pxd to conv.pyx, and the enums there would not exist.
include "conv.pxd"
