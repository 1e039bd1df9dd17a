# The declarations of src_c/activation.pxd under the module's run-time name (fastnn._activation), so that
# Cython checks them against activation.pyx (it matches a .pxd by the full module name).
include "activation.pxd"
