# Max pooling (no padding) and its inverse, depooling (PyTorch MaxPool2d(return_indices=True)
# and MaxUnpool2d). argmax holds the flat index h*W + w of each max inside its (H, W) plane.
# Every kernel OVERWRITES its outputs (never accumulates), like every fastnn backward;
# depool2d zeroes `out` first and then sums where overlapping windows picked the same input.
from cython cimport floating
from libc.stdint cimport int64_t

cdef void maxpool2d_forward_kernel(floating[:, :, :, ::1] y, int64_t[:, :, :, ::1] argmax,
                                   const floating[:, :, :, ::1] x, int kernel_h, int kernel_w,
                                   int stride_h, int stride_w, int num_threads) noexcept nogil
cdef void depool2d_kernel(floating[:, :, :, ::1] out, const floating[:, :, :, ::1] values,
                          const int64_t[:, :, :, ::1] argmax, int num_threads) noexcept nogil
cdef void depool2d_backward_kernel(floating[:, :, :, ::1] dvalues, const floating[:, :, :, ::1] dout,
                                   const int64_t[:, :, :, ::1] argmax, int num_threads) noexcept nogil
