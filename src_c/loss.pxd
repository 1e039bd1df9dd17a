# Losses on (N, K) C-contiguous outputs. Each returns the batch loss and OVERWRITES its gradient
# output (never accumulates) with d(returned loss)/d(input), the mean already folded in.
from cython cimport floating
from libc.stdint cimport int64_t

cdef void softmax_forward_kernel(floating[:, ::1] y, const floating[:, ::1] x,
                                 int num_threads) noexcept nogil
cdef double softmax_cross_entropy_kernel(floating[:, ::1] dlogits, const floating[:, ::1] logits,
                                         const int64_t[::1] labels, int num_threads) noexcept nogil
cdef double mse_kernel(floating[:, ::1] dpred, const floating[:, ::1] pred,
                       const floating[:, ::1] target, int num_threads) noexcept nogil
cdef double mse_labels_kernel(floating[:, ::1] dpred, const floating[:, ::1] pred,
                              const int64_t[::1] labels, int num_threads) noexcept nogil
cdef double bce_with_logits_kernel(floating[:, ::1] dlogits, const floating[:, ::1] logits,
                                   const floating[:, ::1] target, int num_threads) noexcept nogil
cdef Py_ssize_t count_correct_kernel(const floating[:, ::1] logits,
                                     const int64_t[::1] labels) noexcept nogil
