# Element-wise activation math shared by the activation kernels and the fused dense kernel.
# Derivatives take the activation's OUTPUT y (all three can be written in terms of it).
cimport cython
from cython cimport floating
from libc.math cimport exp, tanh, tanhf

cdef extern from "fastnn_expf.h" nogil:
    float fastnn_expf(float x)  # vectorisable (see the header); float64 keeps libm's exp

cdef enum Activation:
    ACT_NONE = 0
    ACT_RELU = 1
    ACT_SIGMOID = 2
    ACT_TANH = 3


@cython.cdivision(True)  # the modules' directive does not reach a .pxd: no zero check here
cdef inline floating sigmoid_of(floating z) noexcept nogil:
    # exp(-z) is inf for very negative z (fastnn_expf above 88, libm's exp above 709), giving
    # exactly 0, and 0 for very positive z, giving exactly 1: no NaN either way.
    # Constants typed as floating: a bare 1 made Cython compute float32 sigmoids in double.
    if floating is float:
        return (<floating>1) / ((<floating>1) + fastnn_expf(-z))
    else:
        return 1 / (1 + exp(-z))


cdef inline floating tanh_of(floating z) noexcept nogil:
    if floating is float:
        return tanhf(z)
    else:
        return tanh(z)


# Bias + activation and its slope, a row at a time: the switch outside the loop and raw pointers,
# so gcc vectorises them (indexing memoryviews inside prange, or switching per element, did not).
cdef inline void bias_activate_row(floating* y, const floating* b, Py_ssize_t n, int act) noexcept nogil:
    # y (n,) = activate(act, y + b)
    cdef Py_ssize_t c
    for c in range(n):
        y[c] = y[c] + b[c]
    activate_row(y, n, act)


cdef inline void activate_row(floating* y, Py_ssize_t n, int act) noexcept nogil:
    # y (n,) = activate(act, y) in place
    cdef Py_ssize_t c
    if act == ACT_RELU:
        for c in range(n):
            y[c] = y[c] * (y[c] > 0)
    elif act == ACT_SIGMOID:
        for c in range(n):
            y[c] = sigmoid_of(y[c])
    elif act == ACT_TANH:
        for c in range(n):
            y[c] = tanh_of(y[c])


cdef inline void slope_row(floating* dy, const floating* y, Py_ssize_t n, int act) noexcept nogil:
    # dy (n,) *= d activate / dz, from y = activate(z)
    cdef Py_ssize_t c
    if act == ACT_RELU:
        for c in range(n):
            dy[c] = dy[c] * (y[c] > 0)
    elif act == ACT_SIGMOID:
        for c in range(n):
            dy[c] = dy[c] * (y[c] * (1 - y[c]))
    elif act == ACT_TANH:
        for c in range(n):
            dy[c] = dy[c] * (1 - y[c] * y[c])
