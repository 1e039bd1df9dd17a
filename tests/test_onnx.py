"""ONNX export: ONNX Runtime (the peer, an independent implementation of every op) must give
predict_raw / predict_proba for every preset and for compositions of every layer, at batch 1
and 64 from one exported file; the file passes onnx.checker; what cannot be exported fails
clearly. CLI and lazy-import checks at the end."""
import os
import subprocess
import sys
from pathlib import Path

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
    if isinstance(model.loss, fastnn.MSE) and len(model.layers[-1].output_shape) != 1:
        return rng.standard_normal((n,) + model.layers[-1].output_shape).astype(model.dtype)
    return rng.integers(0, model.layers[-1].output_shape[0], n)


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


# -- what cannot be exported ------------------------------------------------------------------
class ScaledDense(Dense):
    """A subclass computes something else: its parent's converter must not be used for it."""


@pytest.mark.parametrize("make,kwargs,error,word", [
    (lambda: fastnn.Sequential([Dense(3)], loss=fastnn.MSE()), {}, ValueError, "not built"),
    (lambda: "model.fastnn", {}, TypeError, "Sequential"),
    (lambda: fastnn.Sequential([ScaledDense(3)], input_shape=(4,)), {}, ValueError, "ScaledDense"),
    (lambda: fastnn.Sequential([Dense(3)], input_shape=(4,)), {"probabilities": True}, ValueError, "loss"),
    (lambda: composed("unpool-is-the-output").compile(fastnn.SoftmaxCrossEntropy(), fastnn.SGD(lr=0.1)),
     {"probabilities": True}, ValueError, "flat output"),
    (lambda: composed("activation-chains"), {"probabilities": "yes"}, TypeError, "probabilities"),
    (lambda: composed("activation-chains"), {"opset": MIN_OPSET - 1}, ValueError, "opset"),
    (lambda: composed("activation-chains"), {"opset": 1000}, ValueError, "opset"),
    (lambda: composed("activation-chains"), {"opset": True}, ValueError, "opset"),
])
def test_unexportable_models_fail_clearly_and_leave_the_old_file(make, kwargs, error, word, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous export")
    with pytest.raises(error, match=word):
        to_onnx(make(), path, **kwargs)
    assert path.read_bytes() == b"previous export"
    assert os.listdir(tmp_path) == ["m.onnx"]  # no temp file left


def test_export_replaces_an_existing_file_whole(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"x" * 10**6)  # longer than the export: no tail of it may remain
    model = composed("activation-chains")
    assert to_onnx(model, path) == path
    assert_matches(model, export_checked(model, path), np.ones((2, 7), np.float32), False)


# -- the command line -------------------------------------------------------------------------
@pytest.fixture
def saved_lenet(tmp_path):
    model = zoo.PRESETS["lenet"].build(seed=1, hidden=20)
    model.save(tmp_path / "lenet.fastnn")
    return model, str(tmp_path / "lenet.fastnn")


@pytest.mark.parametrize("probabilities", [False, True], ids=["raw", "proba"])
def test_cli_export_writes_a_file_onnx_runtime_serves(saved_lenet, probabilities, tmp_path, capsys):
    model, model_file = saved_lenet
    out = str(tmp_path / "lenet.onnx")
    assert main(["export", model_file, "--onnx", out] + ["--probabilities"] * probabilities) == 0
    assert "wrote" in capsys.readouterr().out
    x = np.random.default_rng(5).random((64, 1, 28, 28), dtype=np.float32)
    assert_matches(model, export_checked(model, out, probabilities), x, probabilities)
    np.testing.assert_array_equal(run_onnx(session(out), x), run_onnx(export_checked(model, tmp_path / "b.onnx",
                                                                                      probabilities), x))


def _cli_error(capsys, *argv):
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fastnn: error: ")
    return err


def test_cli_export_errors_are_one_line_exit_2(saved_lenet, tmp_path, capsys):
    _, model_file = saved_lenet
    before = Path(model_file).read_bytes()
    assert "model file itself" in _cli_error(capsys, "export", model_file, "--onnx", model_file)
    assert Path(model_file).read_bytes() == before
    assert "does not exist" in _cli_error(capsys, "export", model_file, "--onnx", str(tmp_path / "no" / "m.onnx"))
    assert "folder" in _cli_error(capsys, "export", model_file, "--onnx", str(tmp_path))
    (tmp_path / "junk.fastnn").write_bytes(b"not a model")
    assert "junk.fastnn" in _cli_error(capsys, "export", str(tmp_path / "junk.fastnn"), "--onnx",
                                       str(tmp_path / "j.onnx"))
    assert "missing.fastnn" in _cli_error(capsys, "export", str(tmp_path / "missing.fastnn"), "--onnx",
                                          str(tmp_path / "j.onnx"))
    assert "--onnx" in _cli_error(capsys, "export", model_file)
    assert sorted(os.listdir(tmp_path)) == ["junk.fastnn", "lenet.fastnn"]


# -- the extra stays optional -------------------------------------------------------------------
def _python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_fastnn_does_not_import_onnx():
    proc = _python("import sys, fastnn, fastnn.onnx, fastnn.cli, fastnn.commands\n"
                   "bad = [m for m in ('onnx', 'onnxruntime') if m in sys.modules]\n"
                   "assert not bad, bad")
    assert proc.returncode == 0, proc.stderr


def test_without_onnx_the_export_says_how_to_install_it(saved_lenet, tmp_path):
    _, model_file = saved_lenet
    block = "import sys; sys.modules['onnx'] = None\n"  # `import onnx` now raises ImportError
    proc = _python(block + "import fastnn, fastnn.onnx\n"
                   "m = fastnn.Sequential([fastnn.Dense(2)], input_shape=(3,))\n"
                   f"fastnn.onnx.to_onnx(m, {str(tmp_path / 'm.onnx')!r})")
    assert proc.returncode == 1 and 'ImportError: ONNX export needs the onnx package' in proc.stderr
    assert 'pip install "fastnn[onnx]"' in proc.stderr
    proc = _python(block + f"from fastnn.cli import main; sys.exit(main(['export', {model_file!r}, '--onnx', "
                   f"{str(tmp_path / 'm.onnx')!r}]))")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert 'pip install "fastnn[onnx]"' in proc.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_the_model_method_writes_what_the_function_writes(tmp_path):
    model = zoo.get("spiral").build(seed=0)
    assert model.to_onnx(tmp_path / "a.onnx", probabilities=True) == tmp_path / "a.onnx"
    to_onnx(model, tmp_path / "b.onnx", probabilities=True)
    a, b = onnx.load(tmp_path / "a.onnx"), onnx.load(tmp_path / "b.onnx")
    assert a.graph == b.graph
