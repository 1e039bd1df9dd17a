# Element-wise activations on flat C-contiguous arrays (callers pass arr.reshape(-1)).
# Forward may run in place (y is x); backward OVERWRITES dx (never accumulates) and may run in
# place (dx is dy). Backward takes the forward OUTPUT y: relu's sign pattern is the same for x
# and y, sigmoid' = y (1 - y), tanh' = 1 - y^2.
from cython cimport floating

cdef void relu_forward_kernel(floating[::1] y, const floating[::1] x, int num_threads) noexcept nogil
cdef void relu_backward_kernel(floating[::1] dx, const floating[::1] dy, const floating[::1] y,
                               int num_threads) noexcept nogil
cdef void sigmoid_forward_kernel(floating[::1] y, const floating[::1] x, int num_threads) noexcept nogil
cdef void sigmoid_backward_kernel(floating[::1] dx, const floating[::1] dy, const floating[::1] y,
                                  int num_threads) noexcept nogil
cdef void tanh_forward_kernel(floating[::1] y, const floating[::1] x, int num_threads) noexcept nogil
cdef void tanh_backward_kernel(floating[::1] dx, const floating[::1] dy, const floating[::1] y,
                               int num_threads) noexcept nogil
