"""The optional peers of bench/compare.py (JAX, ONNX Runtime, scikit-learn) compute the same math
as fastnn from the same weights and data: losses and weights after a few SGD steps, and the
predictions, checked through the same worker process compare.py times.

Each peer runs in the interpreter that has it (bench/baselines/peers.py): $FASTNN_PEER_PYTHON_JAX
(..._ONNXRUNTIME, ..._SKLEARN) or this one; a peer that interpreter cannot import is skipped.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench")
sys.path.insert(0, BENCH)
from baselines import cases, peers, train_flops, spec_of, weights_of  # noqa: E402
import compare_report  # noqa: E402

# (preset, hidden, batch): small hidden layers, the presets' real losses/optimizers/activations.
TINY = [("nielsen", 5, 4), ("mlp", 7, 5), ("spiral", 4, 6), ("lenet", 12, 2)]
STEPS = 3


def _worker(peer, model, name):
    python = peers.interpreter(peer)
    note = peers.availability(peer, python)
    if note:
        pytest.skip(note)
    return peers.Worker(peer, model, name, threads=1, steps=1, measure_seconds=0.01, python=python)


def _batches(name, batch, seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.random((STEPS, batch) + cases.input_shape(name)).astype(np.float32)
    return xs, rng.integers(0, 3 if name == "spiral" else 10, (STEPS, batch))


def _fastnn_run(model, xs, ys):
    return [model.train_step(x, y) for x, y in zip(xs, ys)], weights_of(model)


@pytest.mark.parametrize("mode", ["jax.jit", "jax.scan"])
@pytest.mark.parametrize("name,hidden,batch", TINY, ids=[t[0] for t in TINY])
def test_jax_steps_match_fastnn(name, hidden, batch, mode, tmp_path):
    model = cases.fastnn_model(name, hidden=hidden)
    xs, ys = _batches(name, batch)
    with _worker("jax", model, name) as worker:
        assert mode in worker.train_modes
        got = worker.check(mode, str(tmp_path / "out.npz"), xs=xs, ys=ys)
    losses, weights = _fastnn_run(model, xs, ys)
    np.testing.assert_allclose(got["losses"], losses, rtol=2e-4)
    for i, want in enumerate(weights):
        np.testing.assert_allclose(got[f"arr_{i}"], want, rtol=1e-3, atol=2e-5)


@pytest.mark.parametrize("name,hidden,batch", [t for t in TINY if t[0] in ("mlp", "spiral")],
                         ids=["mlp", "spiral"])
def test_sklearn_steps_match_fastnn(name, hidden, batch, tmp_path):
    model = cases.fastnn_model(name, hidden=hidden)
    xs, ys = _batches(name, batch)
    with _worker("sklearn", model, name) as worker:
        got = worker.check("sklearn", str(tmp_path / "out.npz"), xs=xs, ys=ys)
        x = xs[0].reshape(batch, -1)
        proba = worker.check("sklearn", str(tmp_path / "p.npz"), x=x)["output"]
    losses, weights = _fastnn_run(model, xs, ys)
    np.testing.assert_allclose(got["losses"], losses, rtol=2e-4)
    for i, want in enumerate(weights):
        np.testing.assert_allclose(got[f"arr_{i}"], want, rtol=1e-3, atol=2e-5)
    logits = model.forward(x)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(proba, e / e.sum(axis=1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_sklearn_refuses_what_it_cannot_express():
    model = cases.fastnn_model("lenet", hidden=12)
    with pytest.raises(peers.PeerError, match="Dense layers only"):
        _worker("sklearn", model, "lenet")
    with pytest.raises(peers.PeerError, match="softmax cross-entropy"):
        _worker("sklearn", cases.fastnn_model("nielsen", hidden=5), "nielsen")


@pytest.mark.parametrize("name,hidden,batch", TINY, ids=[t[0] for t in TINY])
def test_onnxruntime_predicts_as_fastnn(name, hidden, batch, tmp_path):
    model = cases.fastnn_model(name, hidden=hidden)
    x = _batches(name, batch)[0][0]
    with _worker("onnxruntime", model, name) as worker:
        assert worker.infer_modes == ["onnxruntime"] and worker.train_modes == []
        got = worker.check("onnxruntime", str(tmp_path / "out.npz"), x=x)["output"]
    np.testing.assert_allclose(got, model.predict_raw(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,hidden,batch", TINY, ids=[t[0] for t in TINY])
def test_own_onnx_graph_equals_fastnn_export(name, hidden, batch):
    """The fallback graph (a peer venv with onnx, a parent without) computes what fastnn's
    exporter's graph computes."""
    pytest.importorskip("onnx", reason="the onnx extra is not installed")
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from baselines import onnx_nets
    from fastnn.onnx import to_onnx_proto
    model = cases.fastnn_model(name, hidden=hidden)
    x = _batches(name, batch)[0][0]
    own = onnx_nets.Session(onnx_nets.graph_from_spec(spec_of(model), weights_of(model)), 1).predict(x)
    exported = onnx_nets.Session(to_onnx_proto(model).SerializeToString(), 1).predict(x)
    np.testing.assert_allclose(own, exported, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(own, model.predict_raw(x), rtol=1e-4, atol=1e-5)


def test_jax_predicts_and_times(tmp_path):
    model = cases.fastnn_model("lenet", hidden=12)
    x = _batches("lenet", 3)[0][0]
    with _worker("jax", model, "lenet") as worker:
        got = worker.check("jax", str(tmp_path / "out.npz"), x=x)["output"]
        assert worker.train("jax.scan") > 0 and worker.infer("jax", 1) > 0
        assert set(worker.versions) >= {"jax", "jaxlib"}
    np.testing.assert_allclose(got, model.predict_raw(x), rtol=1e-4, atol=1e-5)


# -- selection, interpreters, notes: no peer needed ----------------------------------------------
def test_selection_and_interpreter_errors():
    assert peers.parse_selection("jax, sklearn") == ["jax", "sklearn"]
    assert peers.parse_selection("") == []
    with pytest.raises(ValueError, match="unknown peer 'torch2'"):
        peers.parse_selection("jax,torch2")
    assert peers.parse_pythons(["jax=/x/python"]) == {"jax": "/x/python"}
    for bad in ("jax", "tf=/x/python", "jax="):
        with pytest.raises(ValueError, match="PEER=PATH"):
            peers.parse_pythons([bad])
    assert peers.interpreter("sklearn", {"sklearn": "/x/python"}) == "/x/python"


def test_missing_interpreter_is_a_note_not_an_error(tmp_path):
    note = peers.availability("jax", str(tmp_path / "no-python"))
    assert note.startswith("note: jax skipped")
    fake = tmp_path / "python"  # runs, but has no module at all
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    assert "cannot import jax" in peers.availability("jax", str(fake))


def test_compare_rejects_an_unknown_peer_in_one_line():
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "compare.py"), "--peers", "tensorflow"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown peer 'tensorflow'" in proc.stderr.strip().splitlines()[-1]


def test_lenet_step_flops_counted_by_hand():
    """conv1 forward + dW (no dX: the input), conv2, fc1, fc2 forward + dW + dX, per sample."""
    conv1, conv2 = 20 * 1 * 25 * 24 * 24, 50 * 20 * 25 * 8 * 8
    fc1, fc2 = 800 * 500, 500 * 10
    want = 2 * (2 * conv1 + 3 * (conv2 + fc1 + fc2))
    assert train_flops(spec_of(cases.fastnn_model("lenet"))) == want == 13_182_000


def test_report_names_the_best_peer_and_the_fraction_of_peak():
    r = {"workload": "lenet", "threads": 1, "batch": 64, "steps": 10,
         "samples_per_s": {"fastnn": 3000.0, "torch": 1000.0, "jax.scan": 2500.0},
         "step_us": {"fastnn": 21333.0, "torch": 64000.0, "jax.scan": 25600.0},
         "others_cpu_train": 0.2, "step_flops": 13_182_000 * 64,
         "fma_peak": {"128": 40.0, "256": 80.0, "512": 160.0},
         "infer_images_per_s": {64: {"fastnn": 20000.0, "onnxruntime": 10000.0}},
         "others_cpu_infer": {64: 0.0}, "peer_notes": ["note: sklearn skipped on lenet t=1: x"]}
    text = compare_report.table(r)
    assert "fastnn/best peer (jax.scan) 1.20x  MISS (>= 1.5x)" in text
    assert "fastnn/torch       3.00x  PASS (>= 2x)" in text
    assert "NOISY" in text.splitlines()[1] and "note: sklearn skipped" in text
    assert "25% of the 512-bit FMA peak (160 GFLOP/s), 49% of the 256-bit one  MISS (>= 60%)" in text
    assert "fastnn/onnxruntime   2.00x  vs onnxruntime: PASS (>= 1.5x)" in text
    assert "no FMA peak" in compare_report.peak_note(1.0, None)
    disturbed = compare_report.peak_note(20.0, {"256": 40.0, "others_cpu": 0.5})
    assert disturbed.startswith("20.0 GFLOP/s = 50% of the 256-bit") and "[peak: others used 50%" in disturbed
