"""ONNX export: ONNX Runtime (the peer, an independent implementation of every op) must give
predict_raw / predict_proba for every preset and for compositions of every layer, at batch 1
and 64 from one exported file; the file passes onnx.checker; what cannot be exported fails
clearly. CLI and lazy-import checks at the end."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import zoo
from fastnn.cli import main
from fastnn.layers import Conv2D, Dense, Flatten, MaxPool2D, MaxUnpool2D, ReLU, Sigmoid, Tanh

onnx = pytest.importorskip("onnx", reason='ONNX export tests need pip install "fastnn[onnx]"')
ort = pytest.importorskip("onnxruntime", reason='ONNX export tests need pip install "fastnn[onnx]"')
from fastnn.onnx import MIN_OPSET, OPSET, to_onnx, to_onnx_proto  # noqa: E402 - needs onnx

# float32: kernels and ONNX Runtime sum in different orders (im2col GEMM vs MLAS conv).
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
BATCHES = (1, 64)


def session(path_or_bytes):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path_or_bytes, options, providers=["CPUExecutionProvider"])


def run_onnx(sess, x):
    return sess.run(["output"], {"input": x})[0]


def export_checked(model, path, probabilities=False, **kwargs):
    to_onnx(model, path, probabilities=probabilities, **kwargs)
    onnx.checker.check_model(str(path), full_check=True)
    return session(str(path))


def assert_matches(model, sess, x, probabilities):
    expected = model.predict_proba(x) if probabilities else model.predict_raw(x)
    got = run_onnx(sess, x)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, **TOL[model.dtype.type])


def targets(model, n, rng):
    """Labels or float targets that the model's loss takes."""
    if isinstance(model.loss, fastnn.BinaryCrossEntropy):
        return rng.integers(0, 2, n)
    if isinstance(model.loss, fastnn.MSE) and len(model.output_shape) != 1:
        return rng.standard_normal((n,) + model.output_shape).astype(model.dtype)
    return rng.integers(0, model.output_shape[0], n)


# -- presets ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_presets():
    """Each preset built with a seed and trained a few steps on random data."""
    models, rng = {}, np.random.default_rng(0)
    for name, preset in zoo.PRESETS.items():
        model, fresh = preset.build(seed=3), preset.build(seed=3)
        x = rng.random((32,) + model.input_shape, dtype=np.float32)
        model.fit(x, targets(model, 32, rng), epochs=2, batch_size=8, seed=0, verbose=0)
        assert not np.array_equal(model.params, fresh.params), f"{name}: training did not move the weights"
        models[name] = model
    return models


@pytest.mark.parametrize("probabilities", [False, True], ids=["raw", "proba"])
@pytest.mark.parametrize("name", list(zoo.PRESETS))
def test_every_preset_matches_onnx_runtime_at_batch_1_and_64(trained_presets, name, probabilities, tmp_path):
    model = trained_presets[name]
    sess = export_checked(model, tmp_path / f"{name}.onnx", probabilities)
    x = np.random.default_rng(1).random((max(BATCHES),) + model.input_shape, dtype=np.float32)
    for n in BATCHES:
        assert_matches(model, sess, x[:n], probabilities)


# -- compositions of every layer ----------------------------------------------------------------
def _nested_unpool():
    pool_a, pool_b = MaxPool2D(2), MaxPool2D(2)
    return [Conv2D(3, 3, padding=1), ReLU(), pool_a, Conv2D(3, 3, padding=1), pool_b, MaxUnpool2D(pool_b),
            Tanh(), Conv2D(3, 3, padding=1), MaxUnpool2D(pool_a), Flatten(), Dense(4)]


COMPOSITIONS = {  # name: (layers, per-sample input shape, loss)
    "conv-stride-padding": (lambda: [Conv2D(3, 3, stride=2, padding=1), ReLU(), Flatten(),
                                     Dense(5, "tanh"), Dense(4)], (2, 9, 9), fastnn.SoftmaxCrossEntropy),
    "conv-uneven-overlapping-pool": (lambda: [Conv2D(4, (3, 2), stride=(1, 2), padding=(2, 0)), Tanh(),
                                              MaxPool2D(3, stride=2), Conv2D(2, 1), Sigmoid(), Flatten(),
                                              Dense(3, "sigmoid"), Dense(1)], (1, 10, 11),
                                     fastnn.BinaryCrossEntropy),
    # 7x7 pooled 2x2 drops the last row and column: the unpool must still give 7x7.
    "pool-unpool-odd-size": (lambda: [Conv2D(3, 3, padding=1), MaxPool2D(2), ReLU(), MaxUnpool2D(1), Sigmoid(),
                                      Flatten(), Dense(6, "relu"), Dense(3)], (2, 7, 7),
                             fastnn.SoftmaxCrossEntropy),
    # Overlapping windows pick the same input: fastnn sums their values (the ScatterElements path).
    "unpool-overlapping-windows": (lambda: [MaxPool2D(3, stride=1), Tanh(), MaxUnpool2D(0), Conv2D(2, 2),
                                            Flatten(), Dense(3)], (2, 8, 6), fastnn.MSE),
    "unpool-overlap-in-width-only": (lambda: [MaxPool2D((2, 3), stride=(2, 1)), Sigmoid(), MaxUnpool2D(0),
                                              Flatten(), Dense(2)], (1, 6, 7), fastnn.SoftmaxCrossEntropy),
    "nested-unpools": (_nested_unpool, (2, 8, 8), fastnn.SoftmaxCrossEntropy),
    "unpool-is-the-output": (lambda: [Conv2D(2, 3, padding=1), MaxPool2D(2), MaxUnpool2D(1)], (1, 6, 6),
                             fastnn.MSE),
    "activation-chains": (lambda: [Dense(8), ReLU(), Sigmoid(), Tanh(), Dense(6, "relu"), Tanh(),
                                   Dense(5, "sigmoid"), Dense(2, "tanh")], (7,), fastnn.MSE),
    "flatten-only-then-dense": (lambda: [Flatten(), Dense(3, "sigmoid"), Dense(3)], (2, 3, 4),
                                fastnn.SoftmaxCrossEntropy),
}


def random_weights(model, rng):
    """Every weight and bias nonzero (biases start at 0), so a swapped or dropped one shows."""
    model.params[...] = rng.standard_normal(model.params.size) * 0.5
    return model


def composed(name, dtype=np.float32, seed=0):
    make, shape, loss = COMPOSITIONS[name]
    model = fastnn.Sequential(make(), loss=loss(), optimizer=fastnn.SGD(lr=0.01), input_shape=shape,
                              dtype=dtype, seed=seed)
    return random_weights(model, np.random.default_rng(seed))


@pytest.mark.parametrize("probabilities", [False, True], ids=["raw", "proba"])
@pytest.mark.parametrize("name", list(COMPOSITIONS))
def test_compositions_match_onnx_runtime(name, probabilities, tmp_path):
    model = composed(name)
    sess = export_checked(model, tmp_path / "m.onnx", probabilities)
    x = np.random.default_rng(2).standard_normal((max(BATCHES),) + model.input_shape).astype(np.float32)
    for n in BATCHES:
        assert_matches(model, sess, x[:n], probabilities)


def test_pool_ties_pick_the_first_max_in_both(tmp_path):
    """Integer inputs in [0, 3): most pool windows hold ties, and the unpool shows which won."""
    model = composed("pool-unpool-odd-size")
    model.layers[0].params["w"][...] = np.round(model.layers[0].params["w"])  # integer conv: exact ties
    x = np.random.default_rng(3).integers(0, 3, (64,) + model.input_shape).astype(np.float32)
    assert_matches(model, export_checked(model, tmp_path / "m.onnx"), x, False)


def test_overlapping_unpool_needs_the_sum(tmp_path):
    """ONNX Runtime's own MaxUnpool keeps one value where windows overlap; the export must not
    use it there. Guards the reason for the ScatterElements path (and that it is taken)."""
    model = composed("unpool-overlapping-windows")
    proto = to_onnx_proto(model)
    assert "ScatterElements" in {n.op_type for n in proto.graph.node}
    assert "MaxUnpool" not in {n.op_type for n in proto.graph.node}
    assert "MaxUnpool" in {n.op_type for n in to_onnx_proto(composed("pool-unpool-odd-size")).graph.node}


def _random_net(draw):
    from hypothesis import strategies as st
    # sampled_from's first element is hypothesis's "simplest": put the rich cases first.
    act = draw(st.sampled_from([ReLU, Tanh, Sigmoid, None]))
    layers = [Conv2D(draw(st.integers(1, 4)), (draw(st.integers(1, 4)), draw(st.integers(1, 4))),
                     stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                     padding=(draw(st.integers(0, 2)), draw(st.integers(0, 2))))]
    layers += [act()] if act else []
    pooling = draw(st.sampled_from(["pool+unpool", "pool", "none"]))
    if pooling != "none":
        pool = MaxPool2D((draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                         stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))))
        layers += [pool, Tanh(), MaxUnpool2D(pool)] if pooling == "pool+unpool" else [pool]
    return layers + [Flatten(), Dense(draw(st.integers(1, 5)), draw(st.sampled_from(["relu", "sigmoid", "tanh",
                                                                                       None]))), Dense(3)]


def test_random_conv_pool_nets_match_onnx_runtime():
    hyp = pytest.importorskip("hypothesis", reason="random compositions need hypothesis")
    st = hyp.strategies

    @hyp.settings(max_examples=40, deadline=None, derandomize=True)
    @hyp.given(st.data(), st.integers(1, 3), st.integers(4, 11), st.integers(4, 11))
    def check(data, c, h, w):
        try:
            model = fastnn.Sequential(_random_net(data.draw), loss=fastnn.SoftmaxCrossEntropy(),
                                      input_shape=(c, h, w), seed=0)
        except ValueError:  # a kernel or pool larger than its input
            hyp.assume(False)
        random_weights(model, np.random.default_rng(0))
        sess = session(to_onnx_proto(model, probabilities=True).SerializeToString())
        x = np.random.default_rng(1).standard_normal((64, c, h, w)).astype(np.float32)
        for n in BATCHES:
            assert_matches(model, sess, x[:n], True)
    check()


# -- float64, opsets, the file ------------------------------------------------------------------
def test_float64_dense_net_matches_onnx_runtime(tmp_path):
    model = composed("activation-chains", dtype=np.float64)
    sess = export_checked(model, tmp_path / "m.onnx", probabilities=True)
    assert_matches(model, sess, np.random.default_rng(0).standard_normal((64, 7)), True)


# Not the other unpool nets: onnx 1.23's reference MaxPool gives per-plane Indices when windows
# overlap (the spec and ONNX Runtime: flat over the whole tensor), and its MaxUnpool ignores the
# output_shape input (IndexError when floor pooling dropped a row).
@pytest.mark.parametrize("name", ["nested-unpools", "conv-stride-padding", "conv-uneven-overlapping-pool"])
def test_float64_conv_nets_match_the_onnx_reference_evaluator(name):
    """ONNX Runtime's CPU provider has no float64 Conv; onnx's own reference runs the file."""
    from onnx.reference import ReferenceEvaluator
    model = composed(name, dtype=np.float64)
    proto = to_onnx_proto(model)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    x = np.random.default_rng(0).standard_normal((3,) + model.input_shape)
    got = ReferenceEvaluator(proto).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, model.predict_raw(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("opset", [MIN_OPSET, OPSET, 18, 21])
def test_opsets(opset, tmp_path):
    model = composed("unpool-overlapping-windows")
    sess = export_checked(model, tmp_path / "m.onnx", opset=opset)
    assert onnx.load(str(tmp_path / "m.onnx")).opset_import[0].version == opset
    assert_matches(model, sess, np.random.default_rng(0).standard_normal((5,) + model.input_shape)
                   .astype(np.float32), False)


def test_the_file_declares_a_dynamic_batch_and_its_origin():
    model = zoo.PRESETS["lenet"].build(seed=0)
    proto = to_onnx_proto(model, probabilities=True)
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (proto.graph.input[0], proto.graph.output[0])]
    assert dims == [["batch", 1, 28, 28], ["batch", 10]]
    assert proto.producer_name == "fastnn" and proto.opset_import[0].version == OPSET
    assert {p.key: p.value for p in proto.metadata_props} == {"fastnn.loss": "SoftmaxCrossEntropy",
                                                              "fastnn.output": "probabilities"}
    assert proto.graph.node[-2].op_type == "Softmax"
    assert "Softmax" not in {n.op_type for n in to_onnx_proto(model).graph.node}
