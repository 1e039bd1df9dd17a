"""The benchmark peers (bench/baselines) compute the same math as fastnn, so bench/compare.py
compares equal work: same forward, loss, gradients and SGD update on tiny shapes (float64 for
numpy, where the match is exact up to rounding; float32 for PyTorch, which only has that here)."""
import os
import sys

import numpy as np
import pytest

from fastnn import ops

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from baselines import cases, numpy_nets, spec_of, weights_of  # noqa: E402

# (preset, hidden, batch): small hidden layers, the presets' real losses/optimizers/activations.
TINY = [("nielsen", 5, 4), ("mlp", 7, 5), ("spiral", 4, 6), ("lenet", 12, 2)]


def _data(name, batch, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((batch,) + cases.input_shape(name)).astype(dtype)
    return x, rng.integers(0, 3 if name == "spiral" else 10, batch)


def _fastnn_grads(model):
    return [np.array(layer.grads[k]) for layer in model.layers for k in layer.param_shapes]


@pytest.mark.parametrize("name,hidden,batch", TINY, ids=[t[0] for t in TINY])
def test_numpy_baseline_matches_fastnn(name, hidden, batch):
    model = cases.fastnn_model(name, hidden=hidden, dtype=np.float64)
    net = numpy_nets.Net.from_spec(spec_of(model), weights_of(model), dtype=np.float64)
    for step in range(2):  # the second step exercises momentum (lenet)
        x, y = _data(name, batch, np.float64, seed=step)
        np.testing.assert_allclose(net.forward(x), model.forward(x), rtol=1e-10, atol=1e-12)
        expected_loss = model.train_step(x, y)
        assert net.train_step(x, y) == pytest.approx(expected_loss, rel=1e-10)
        for got, want in zip(net.gradients(), _fastnn_grads(model)):
            np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-8, atol=1e-11)
        for got, want in zip(net.parameters(), weights_of(model)):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("stride,padding", [((1, 1), (0, 0)), ((2, 1), (1, 2))])
def test_numpy_conv_kernels_match_fastnn_ops(stride, padding):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 8))
    w, b = rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    y, col = numpy_nets.conv2d_forward(x, w, b, stride, padding)
    np.testing.assert_allclose(y, ops.conv2d_forward(x, w, b, stride, padding), rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    got = numpy_nets.conv2d_backward(dy, col, x.shape, w, stride, padding)
    for g, want in zip(got, ops.conv2d_backward(dy, x, w, stride, padding)):
        np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("pool,stride", [((2, 2), (2, 2)), ((3, 2), (2, 1))])
def test_numpy_maxpool_matches_fastnn_ops(pool, stride):
    x = np.random.default_rng(4).standard_normal((2, 3, 9, 7))
    y, idx = numpy_nets.maxpool2d_forward(x, pool, stride)
    want_y, argmax = ops.maxpool2d_forward(x, pool, stride)
    np.testing.assert_array_equal(y, want_y)
    dy = np.random.default_rng(5).standard_normal(y.shape)
    np.testing.assert_allclose(numpy_nets.maxpool2d_backward(dy, idx, x.shape, pool, stride),
                               ops.depool2d(dy, argmax, x.shape), rtol=1e-12)


@pytest.mark.parametrize("name,hidden,batch", TINY, ids=[t[0] for t in TINY])
def test_torch_baseline_matches_fastnn(name, hidden, batch):
    pytest.importorskip("torch", reason="PyTorch lives only in the benchmark venv")
    from baselines import torch_nets
    model = cases.fastnn_model(name, hidden=hidden)
    net = torch_nets.Net(spec_of(model), weights_of(model))
    for step in range(2):
        x, y = _data(name, batch, np.float32, seed=step)
        np.testing.assert_allclose(net.predict(x), model.forward(x), rtol=1e-4, atol=1e-5)
        expected_loss = model.train_step(x, y)
        assert net.train_step(x, y) == pytest.approx(expected_loss, rel=1e-4)
        for got, want in zip(net.parameters(), weights_of(model)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", list(cases.KERNELS))
@pytest.mark.parametrize("who", cases.CONTENDERS)
def test_kernel_cases_run(who, case, threads):
    if not cases.available(who):
        pytest.skip("PyTorch lives only in the benchmark venv")
    threads(1)
    with cases.thread_limit(who, 1):
        cases.kernel_step(who, case)()


def test_same_batches_for_everyone():
    first, again = cases.batches("mlp", 3), cases.batches("mlp", 3)
    assert len(first) == 3 and first[0][0].shape == (100, 784) and first[0][0].dtype == np.float32
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
