# Dense (fully connected) layer, PyTorch layout: y = x @ w.T + b.
# Backward overwrites dx, dw, db (never accumulates), like every fastnn backward.
from cython cimport floating

# An optional activation (act codes in _elementwise.pxd) is fused into both passes; its backward
# overwrites dy with dz = dy * act'(y) before the GEMMs.
cdef void dense_forward_kernel(floating[:, ::1] y, const floating[:, ::1] x,
                               const floating[:, ::1] w, const floating[::1] b,
                               int act, int num_threads) noexcept nogil
cdef void dense_backward_kernel(floating[:, ::1] dx, floating[:, ::1] dw, floating[::1] db,
                                floating[:, ::1] dy, const floating[:, ::1] x,
                                const floating[:, ::1] w, const floating[:, ::1] y, int act,
                                bint need_dx, int num_threads) noexcept nogil
# dense_backward_kernel + plain SGD on w and b (the dW GEMM updates w in place; dw is never
# written, db is). For the one-call train step (train_step.pyx).
cdef void dense_backward_sgd_kernel(floating[:, ::1] dx, floating[:, ::1] w, floating[::1] b,
                                    floating[::1] db, floating[:, ::1] dy,
                                    const floating[:, ::1] x, const floating[:, ::1] y, int act,
                                    bint need_dx, floating lr, int num_threads) noexcept nogil
