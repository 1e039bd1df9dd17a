# conv2d kernels, NCHW, cross-correlation like PyTorch. float32 with stride 1, no padding and
# output rows of >= 8 columns (LeNet's convolutions) runs direct register-tiled kernels
# (fastnn_direct_conv.h: forward, dX, and dW when N*P*Q >= 512); everything else is im2col + one
# OpenBLAS GEMM per product. Backward overwrites dx, dw, db (never accumulates), like every
# fastnn backward.
#
# Sizes: x (N, C, H, W), w (K, C, R, S), b (K,) -> y (N, K, P, Q) with
#   P = (H + 2*pad_h - R) // stride_h + 1,  Q = (W + 2*pad_w - S) // stride_w + 1.
# Scratch, owned by the caller and reused across calls (fastnn.ops.conv2d_workspace makes both):
#   col (C*R*S, N*P*Q)  im2col of the whole batch; row c*R*S + r*S + s, column n*P*Q + p*Q + q.
#                       Backward reuses it for dcol = W^T @ dY once dW is computed.
#   tmp (K, N*P*Q)      forward: y before the NCHW transpose; backward: dY rearranged.
#   dwt (C*R*S, K)      backward only: dW^T, the GEMM orientation OpenBLAS runs fastest.
# The im2col forward leaves im2col(x) in col; backward with col_ready skips recomputing it (a
# layer's forward-then-backward on one batch); the direct forward leaves col alone and its
# backward ignores col_ready. Otherwise scratch contents mean nothing between calls.
# dx may be None (need_dx false): the dX GEMM and col2im are skipped.
from cython cimport floating

cdef void conv2d_forward_kernel(floating[:, :, :, ::1] y, const floating[:, :, :, ::1] x,
                                const floating[:, :, :, ::1] w, const floating[::1] b,
                                int stride_h, int stride_w, int pad_h, int pad_w,
                                floating[:, ::1] col, floating[:, ::1] tmp,
                                int num_threads) noexcept nogil
cdef void conv2d_backward_kernel(floating[:, :, :, ::1] dx, floating[:, :, :, ::1] dw,
                                 floating[::1] db, const floating[:, :, :, ::1] dy,
                                 const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                                 int stride_h, int stride_w, int pad_h, int pad_w,
                                 floating[:, ::1] col, floating[:, ::1] tmp,
                                 floating[:, ::1] dwt, bint need_dx, bint col_ready,
                                 int num_threads) noexcept nogil
