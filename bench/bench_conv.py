"""conv2d kernels (raw fastnn._conv calls on a preallocated workspace, as a layer makes them).

Run: pytest bench/bench_conv.py --benchmark-only   (CI: pytest bench --benchmark-disable)
GFLOP/s counts the GEMM flops only (2*K*CRS*NPQ per product); `ratio` compares with numpy
float32 matmul on the same GEMM shapes, so it charges im2col, col2im and the transposes.
"""
import numpy as np
import pytest

from fastnn import _conv
from fastnn.ops import conv2d_output_shape, conv2d_workspace

from roofline import run_and_record

# LeNet's two convolutions on an MNIST batch of 64.
SHAPES = {"lenet1": ((64, 1, 28, 28), (20, 1, 5, 5)), "lenet2": ((64, 20, 12, 12), (50, 20, 5, 5))}


def _setup(name):
    x_shape, w_shape = SHAPES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    b = rng.standard_normal(w_shape[0], dtype=np.float32)
    y = np.empty(conv2d_output_shape(x_shape, w_shape), np.float32)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    ws = conv2d_workspace(x_shape, w_shape, dtype=np.float32)
    n, k, p, q = y.shape
    crs, npq = x_shape[1] * w_shape[2] * w_shape[3], n * p * q
    gemms = {"forward": (k, crs, npq), "dW": (k, npq, crs, False, True),  # as the brief states it
             "dX": (crs, k, npq, True, False)}
    return x, w, b, y, dy, ws, gemms


@pytest.mark.benchmark(group="conv2d-forward")
@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES)
def test_conv2d_forward(benchmark, threads, shape, num_threads):
    threads(num_threads)
    x, w, b, y, dy, ws, gemms = _setup(shape)
    run_and_record(benchmark, lambda: _conv.conv2d_forward(
        y, x, w, b, 1, 1, 0, 0, ws["col"], ws["tmp"], num_threads), [gemms["forward"]], num_threads)


@pytest.mark.benchmark(group="conv2d-forward-backward")
@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES)
def test_conv2d_forward_backward(benchmark, threads, shape, num_threads):
    threads(num_threads)
    x, w, b, y, dy, ws, gemms = _setup(shape)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)

    def step():
        _conv.conv2d_forward(y, x, w, b, 1, 1, 0, 0, ws["col"], ws["tmp"], num_threads)
        _conv.conv2d_backward(dx, dw, db, dy, x, w, 1, 1, 0, 0, ws["col"], ws["tmp"], ws["dwt"],
                              num_threads, col_state=_conv.ColState.COL_FROM_FORWARD)  # as a layer calls it

    run_and_record(benchmark, step, list(gemms.values()), num_threads)


# The direct kernels where they apply (the default) or im2col + GEMM everywhere.
CONV_PATHS = {"direct": _conv.ConvPaths.FAST_PATHS, "im2col": _conv.ConvPaths.PLAIN_PATH}


# The two paths on the same input: where the direct kernels (fastnn_direct_conv.h) win.
@pytest.mark.benchmark(group="conv-direct")
@pytest.mark.parametrize("part", ["forward", "backward-dW", "backward"])
@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("conv_path", CONV_PATHS)
def test_conv_direct_vs_im2col(benchmark, threads, shape, num_threads, part, conv_path):
    threads(num_threads)
    paths = CONV_PATHS[conv_path]
    x, w, b, y, dy, ws, gemms = _setup(shape)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    if part == "forward":
        def run():
            _conv.conv2d_forward(y, x, w, b, 1, 1, 0, 0, ws["col"], ws["tmp"], num_threads,
                                 paths=paths)
        products = [gemms["forward"]]
    else:
        need_dx = dx if part == "backward" else None

        def run():  # COL_RECOMPUTE: on the direct path the forward leaves no im2col behind
            _conv.conv2d_backward(need_dx, dw, db, dy, x, w, 1, 1, 0, 0, ws["col"], ws["tmp"],
                                  ws["dwt"], num_threads, col_state=_conv.ColState.COL_RECOMPUTE,
                                  paths=paths)
        products = [gemms["dW"]] + ([gemms["dX"]] if part == "backward" else [])
    run_and_record(benchmark, run, products, num_threads)
