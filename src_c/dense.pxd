# Dense (fully connected) layer, PyTorch layout: y = x @ w.T + b.
# Backward overwrites dx, dw, db (never accumulates), like every fastnn backward.
from cython cimport floating

cdef void dense_forward_kernel(floating[:, ::1] y, const floating[:, ::1] x,
                               const floating[:, ::1] w, const floating[::1] b,
                               int num_threads) noexcept nogil
cdef void dense_backward_kernel(floating[:, ::1] dx, floating[:, ::1] dw, floating[::1] db,
                                const floating[:, ::1] dy, const floating[:, ::1] x,
                                const floating[:, ::1] w, bint need_dx, int num_threads) noexcept nogil
