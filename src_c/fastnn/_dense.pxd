# The declarations of src_c/dense.pxd under the name other modules import at run time
# (fastnn._dense): cimported by src_c/train_step.pyx.
include "dense.pxd"
