# Dense (fully connected) layer, PyTorch layout: y = x @ w.T + b.
# Backward overwrites dx, dw, db (never accumulates), like every fastnn backward.
from cython cimport floating
from _options cimport DxMode

cdef enum DwMode:
    # What the compact first-layer backward does with the weight gradient.
    DW_WRITE = 0      # write dw (zero on skipped columns)
    DW_SGD_STEP = 1   # w -= lr * dw through the dW GEMM (plain SGD); dw is not written

# An optional activation (act codes in _elementwise.pxd) is fused into both passes; its backward
# overwrites dy with dz = dy * act'(y) before the GEMMs.
# dx_mode is a DxMode (_options.pxd) and dw_mode a DwMode, typed int so that a caller passing
# the 0/1 of a bint (DX_SKIP/DX_COMPUTE, DW_WRITE/DW_SGD_STEP) still compiles.
cdef void dense_forward_kernel(floating[:, ::1] y, const floating[:, ::1] x,
                               const floating[:, ::1] w, const floating[::1] b,
                               int act, int num_threads) noexcept nogil
cdef void dense_backward_kernel(floating[:, ::1] dx, floating[:, ::1] dw, floating[::1] db,
                                floating[:, ::1] dy, const floating[:, ::1] x,
                                const floating[:, ::1] w, const floating[:, ::1] y, int act,
                                int dx_mode, int num_threads) noexcept nogil
# dense_backward_kernel + plain SGD on w and b (the dW GEMM updates w in place; dw is never
# written, db is). For the one-call train step (train_step.pyx).
cdef void dense_backward_sgd_kernel(floating[:, ::1] dx, floating[:, ::1] w, floating[::1] b,
                                    floating[::1] db, floating[:, ::1] dy,
                                    const floating[:, ::1] x, const floating[:, ::1] y, int act,
                                    int dx_mode, floating lr, int num_threads) noexcept nogil

# The first layer of the one-call train step on inputs with all-zero columns (MNIST's borders:
# 283 of 784 columns are 0 in every image of a batch of 100). Those columns add only zeros to
# x @ w.T and get a zero gradient, so the GEMMs run on the other columns, gathered into xc
# (rows, kept) and wc (out, kept) by runs of adjacent columns; skipped weights are untouched by
# plain SGD and get dw = 0 otherwise. runs holds (first column, length) pairs.
cdef Py_ssize_t nonzero_column_runs(const float* x, Py_ssize_t rows, Py_ssize_t cols, unsigned int* flags,
                                    int* runs, Py_ssize_t* kept) noexcept nogil
cdef bint finite_outside_runs(const float* w, Py_ssize_t rows, Py_ssize_t cols, const int* runs,
                              Py_ssize_t nruns) noexcept nogil
cdef void gather_runs(float* dst, const float* src, Py_ssize_t rows, Py_ssize_t cols,
                      const int* runs, Py_ssize_t nruns, Py_ssize_t kept) noexcept nogil
cdef void dense_forward_compact_kernel(float[:, ::1] y, const float* xc, const float* wc,
                                       Py_ssize_t kept, const float[::1] b, int act,
                                       int num_threads) noexcept nogil
cdef void dense_backward_compact_kernel(float[:, ::1] w, float[::1] b, float[:, ::1] dw,
                                        float[::1] db, float[:, ::1] dy, const float[:, ::1] y,
                                        int act, const float* xc, float* wc, float* dwc,
                                        const int* runs, Py_ssize_t nruns, Py_ssize_t kept,
                                        int dw_mode, float lr, int num_threads) noexcept nogil
