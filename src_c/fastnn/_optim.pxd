# The declarations of src_c/optim.pxd under the name other modules import at run time
# (fastnn._optim): cimported by src_c/train_step.pyx.
include "optim.pxd"
