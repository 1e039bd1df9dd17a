# conv2d kernels, NCHW, cross-correlation like PyTorch. Backward overwrites dx, dw, db (never
# accumulates), like every fastnn backward.
#
# Sizes: x (N, C, H, W), w (K, C, R, S), b (K,) -> y (N, K, P, Q) with
#   P = (H + 2*pad_h - R) // stride_h + 1,  Q = (W + 2*pad_w - S) // stride_w + 1.
# Scratch, owned by the caller and reused across calls (fastnn.ops.conv2d_workspace makes both):
#   col (C*R*S, N*P*Q)  im2col of the whole batch; row c*R*S + r*S + s, column n*P*Q + p*Q + q.
#                       Backward reuses it for dcol = W^T @ dY once dW is computed.
#   tmp (K, N*P*Q)      forward: y before the NCHW transpose; backward: dY rearranged.
#   dwt (C*R*S, K)      backward only: dW^T, the GEMM orientation OpenBLAS runs fastest.
#
# Algorithms, chosen per piece by conv2d_forward_algo and conv2d_backward_plan (conv.pyx, the
# one place; docs/kernels.md states the rules):
#   ALGO_IM2COL  the plain path, every geometry and dtype: im2col + one GEMM (forward, dW),
#                one GEMM + col2im (dX).
#   ALGO_DIRECT  fastnn_direct_conv.h's register-tiled kernels: float32, stride 1, no padding,
#                Q >= 8, on a CPU with AVX2+FMA; dW only when N*P*Q >= DIRECT_DW_MIN_SUM.
# The im2col forward leaves im2col(x) in col; a backward given COL_FROM_FORWARD skips
# recomputing it (a layer's forward-then-backward of one batch), unless the forward could have
# run direct (then col holds nothing). Otherwise scratch contents mean nothing between calls.
from cython cimport floating
from _options cimport DxMode

cpdef enum ConvPaths:
    FAST_PATHS = 0   # each piece by its fastest algorithm that applies (the default)
    PLAIN_PATH = 1   # ALGO_IM2COL for every piece: the reference each fast path must equal

cpdef enum ColState:
    COL_RECOMPUTE = 0     # col holds nothing useful: backward runs im2col if it needs it
    COL_FROM_FORWARD = 1  # col holds what conv2d_forward left for this x, stride and padding

cdef enum ConvAlgo:
    ALGO_NONE = 0    # the piece is not computed (dX of a first layer)
    ALGO_IM2COL = 1
    ALGO_DIRECT = 2

cdef void conv2d_forward_kernel(floating[:, :, :, ::1] y, const floating[:, :, :, ::1] x,
                                const floating[:, :, :, ::1] w, const floating[::1] b,
                                int stride_h, int stride_w, int pad_h, int pad_w,
                                floating[:, ::1] col, floating[:, ::1] tmp,
                                ConvPaths paths, int num_threads) noexcept nogil
# dx is not touched with DX_SKIP (it may be an empty memoryview then).
cdef void conv2d_backward_kernel(floating[:, :, :, ::1] dx, floating[:, :, :, ::1] dw,
                                 floating[::1] db, const floating[:, :, :, ::1] dy,
                                 const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                                 int stride_h, int stride_w, int pad_h, int pad_w,
                                 floating[:, ::1] col, floating[:, ::1] tmp,
                                 floating[:, ::1] dwt, DxMode dx_mode, ColState col_state,
                                 ConvPaths paths, int num_threads) noexcept nogil
