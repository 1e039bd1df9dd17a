"""One build level's results; run by tests/test_isa.py with FASTNN_ISA set, since the kernels
choose their build once per process.

    FASTNN_ISA=avx512 python tests/isa_child.py OUT.npz

Writes what the kernels computed (convolutions, small GEMMs, activations, max-pooling, a LeNet
gradient and a few fit steps) and which builds ran; the test compares those with numpy references and across levels.
The inputs come from the functions below, which the test imports to rebuild them.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import networks as nw  # noqa: E402

# (x shape, w shape): LeNet's conv1 (Q = 24) and conv2 (Q = 8), and rows around the 16-lane
# vector: Q = 9 (8-lane tail), 16 (exactly one vector), 17 and 23 (a 16-lane tail overlapping
# the vector before by 15 and 9 lanes), 33 (two vectors and a tail). Batches large enough that
# dW runs direct (N*P*Q >= 512) except the last case.
CONV_CASES = [((64, 1, 28, 28), (20, 1, 5, 5)), ((16, 20, 12, 12), (50, 20, 5, 5)),
              ((8, 3, 11, 13), (5, 3, 3, 5)), ((6, 2, 9, 20), (7, 2, 2, 5)),
              ((6, 3, 8, 21), (4, 3, 3, 5)), ((5, 2, 7, 27), (6, 2, 3, 5)),
              ((4, 2, 6, 37), (9, 2, 2, 5)), ((1, 2, 5, 20), (3, 2, 3, 4))]
# (op_a, op_b, m, n, k): the three orientations fastnn_small_gemm.h takes, sizes off every
# multiple of 8 and 16: k tails in the dot shape; in the axpy shape n = 2L-column panels, one
# L-column panel, then 1..L-1 columns a row at a time (57 = 32 + 16 + 9 at L = 16).
GEMM_CASES = [("N", "T", 1, 500, 800), ("N", "T", 10, 30, 784), ("N", "T", 13, 37, 101),
              ("N", "T", 3, 5, 17), ("T", "N", 30, 784, 10), ("T", "N", 7, 300, 23),
              ("T", "N", 6, 57, 5), ("N", "N", 5, 47, 33), ("N", "N", 17, 19, 9)]
# LeNet (conv20-ReLU-pool-conv50-ReLU-pool-fc500-ReLU-fc10) on a batch of 8: its conv1 runs
# 16 lanes, conv2 8, and its dense layers the small GEMM. Of seeds 0-39 the one whose forward
# stays farthest from kinks (ReLU at 0, pool ties): 5.9e-5, see test_isa.py.
LENET = nw.Case(spec=(("conv", 20, (5, 5), (1, 1), (0, 0)), ("relu",), ("pool", (2, 2), (2, 2)),
                      ("conv", 50, (5, 5), (1, 1), (0, 0)), ("relu",), ("pool", (2, 2), (2, 2)),
                      ("flatten",), ("dense", 500, "relu"), ("dense", 10, None)),
                input_shape=(1, 28, 28), loss="sce", targets="labels", dtype=np.dtype(np.float32),
                batch=8, seed=4)
FIT_STEPS, FIT_BATCH = 3, 16
# Activations over 1,000 values (16-lane vectors and a tail of 8), in (-12, 12) and with the
# edge values (0, -0, inf, NaN, sigmoid's saturation); max-pool rows of 21 (one 16-lane vector
# and an overlapping one), 12 and 4 outputs (the 8- and 4-lane paths), with ties and a NaN.
# (Not -inf for ReLU: its branch-free x * (x > 0) gives NaN there.)
ACTIVATION_SIZE = 1000
POOL_SHAPES = [(2, 3, 6, 42), (2, 3, 4, 24), (1, 2, 4, 8)]


def activation_inputs():
    rng = np.random.default_rng(400)
    x = rng.uniform(-12, 12, ACTIVATION_SIZE).astype(np.float32)
    x[:8] = [0.0, -0.0, np.inf, -90.0, np.nan, 100.0, -100.0, 88.5]
    dy = rng.standard_normal(ACTIVATION_SIZE, dtype=np.float32)
    return x, dy


def pool_inputs(i):
    rng = np.random.default_rng(500 + i)
    x = rng.integers(-3, 4, POOL_SHAPES[i]).astype(np.float32)  # small integers: many ties
    x.reshape(-1)[7] = np.nan
    return x


def conv_inputs(i):
    xs, ws = CONV_CASES[i]
    rng = np.random.default_rng(100 + i)
    n, _, h, w = xs
    k, _, r, s = ws
    x, w_, b = (rng.standard_normal(shape, dtype=np.float32) for shape in (xs, ws, (k,)))
    dy = rng.standard_normal((n, k, h - r + 1, w - s + 1), dtype=np.float32)
    return x, w_, b, dy


def gemm_inputs(i):
    op_a, op_b, m, n, k = GEMM_CASES[i]
    rng = np.random.default_rng(200 + i)
    a = rng.standard_normal((k, m) if op_a == "T" else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if op_b == "T" else (k, n), dtype=np.float32)
    c = rng.standard_normal((m, n), dtype=np.float32)
    return a, b, c


def fit_data():
    rng = np.random.default_rng(300)
    x = rng.standard_normal((FIT_STEPS * FIT_BATCH, 1, 28, 28), dtype=np.float32)
    return x, rng.integers(0, 10, len(x))


def main(out):
    import fastnn
    from fastnn import _conv, _dense, _pool, ops

    results = {}
    for i, (xs, ws) in enumerate(CONV_CASES):
        x, w, b, dy = conv_inputs(i)
        results[f"conv{i}_y"] = ops.conv2d_forward(x, w, b)
        results[f"conv{i}_dx"], results[f"conv{i}_dw"], _ = ops.conv2d_backward(dy, x, w)
    for i, (op_a, op_b, m, n, k) in enumerate(GEMM_CASES):
        a, b, c = gemm_inputs(i)
        _dense.sgemm(op_a, op_b, 1.5, a, b, 0.5, c, "small")  # c = 1.5 op(a) op(b) + 0.5 c
        results[f"gemm{i}"] = c
    xa, dya = activation_inputs()
    for name in ("relu", "sigmoid", "tanh"):
        y = getattr(ops, name)(xa)
        results[f"{name}_y"] = y
        results[f"{name}_dx"] = getattr(ops, f"{name}_backward")(dya, y)
    for i in range(len(POOL_SHAPES)):
        results[f"pool{i}_y"], results[f"pool{i}_argmax"] = ops.maxpool2d_forward(pool_inputs(i), 2)
    model = nw.build_model(LENET)
    x, y = nw.make_data(LENET)
    results["lenet_params"] = model.params.copy()
    results["lenet_output"] = model.forward(x, training=True)
    model.loss(results["lenet_output"], y)
    model.grads[...] = np.nan  # every gradient must be written by this backward
    model.backward()
    results["lenet_grads"] = model.grads.copy()
    fit = nw.build_model(LENET, optimizer=fastnn.SGD(lr=0.01, momentum=0.9))
    fit.fit(*fit_data(), epochs=1, batch_size=FIT_BATCH, shuffle=False, verbose=0)
    results["fit_params"] = fit.params
    ran = {"info": {key: fastnn.info()[key] for key in ("isa", "isa_source", "small_gemm_simd",
                                                         "direct_conv_simd", "activation_simd")},
           "pool_isa": [_pool.maxpool2x2_isa(shape[3] // 2) for shape in POOL_SHAPES],
           "direct_isa": [_conv.direct_isa(xs, ws) for xs, ws in CONV_CASES],
           "algorithms": [ops.conv2d_algorithms(xs, ws) for xs, ws in CONV_CASES]}
    np.savez(out, ran=json.dumps(ran), **results)


if __name__ == "__main__":
    main(sys.argv[1])
