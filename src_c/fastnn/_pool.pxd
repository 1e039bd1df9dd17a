# The declarations of src_c/pool.pxd under the module's run-time name (fastnn._pool), so that
# Cython checks them against pool.pyx (it matches a .pxd by the full module name).
include "pool.pxd"
