# Element-wise activation math shared by the activation kernels and the fused dense kernel.
# Derivatives take the activation's OUTPUT y (all three can be written in terms of it).
from cython cimport floating
from libc.math cimport exp, expf, tanh, tanhf

cdef enum Activation:
    ACT_NONE = 0
    ACT_RELU = 1
    ACT_SIGMOID = 2
    ACT_TANH = 3


cdef inline floating sigmoid_of(floating z) noexcept nogil:
    # exp(-z) overflows to inf for very negative z, giving exactly 0: no NaN either way.
    if floating is float:
        return 1 / (1 + expf(-z))
    else:
        return 1 / (1 + exp(-z))


cdef inline floating tanh_of(floating z) noexcept nogil:
    if floating is float:
        return tanhf(z)
    else:
        return tanh(z)


cdef inline floating activate(int act, floating z) noexcept nogil:
    if act == ACT_RELU:
        return z * (z > 0)  # branch-free: a sign branch mispredicts half the time
    if act == ACT_SIGMOID:
        return sigmoid_of(z)
    if act == ACT_TANH:
        return tanh_of(z)
    return z


cdef inline floating activation_slope(int act, floating y) noexcept nogil:
    # d activate / dz, from y = activate(z)
    if act == ACT_RELU:
        return y > 0
    if act == ACT_SIGMOID:
        return y * (1 - y)
    if act == ACT_TANH:
        return 1 - y * y
    return 1
