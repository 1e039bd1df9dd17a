# The declarations of src_c/loss.pxd under the name other modules import at run time
# (fastnn._loss): cimported by src_c/train_step.pyx.
include "loss.pxd"
