"""`fastnn train --config FILE` and `--data FILE.npz`: every preset is a run file that trains
exactly what --model trains; any data set in an .npz trains, evaluates and streams; bad run files
and bad .npz files (fuzzed) end in one line and exit 2."""
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fastnn
from fastnn import datasets, zoo
from fastnn.cli import main
from fastnn.train import loop

FUZZ = settings(deadline=None, derandomize=True, database=None, max_examples=60,
                suppress_health_check=list(HealthCheck))


def cli(capsys, *args):
    """(exit code, stdout, stderr) of `fastnn ARGS` run in this process."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def mnist_npz(tmp_path_factory):
    (x, y), (xt, yt) = datasets.mnist_subset()
    path = tmp_path_factory.mktemp("npz") / "mnist.npz"
    np.savez(path, x_train=x[:600], y_train=y[:600], x_test=xt[:200], y_test=yt[:200])
    return path


@pytest.fixture(scope="module")
def blobs_npz(tmp_path_factory):
    """Not MNIST: 5 float features, 4 classes."""
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 5)) * 3
    y = rng.integers(0, 4, 500)
    x = (centers[y] + rng.standard_normal((500, 5))).astype(np.float32)
    path = tmp_path_factory.mktemp("blobs") / "blobs.npz"
    np.savez(path, x_train=x[:400], y_train=y[:400], x_test=x[400:], y_test=y[400:])
    return path


def blobs_config(tmp_path):
    cfg = {"format": "fastnn.model", "version": 1, "input_shape": [5], "seed": 1,
           "layers": [{"class": "Dense", "config": {"units": 16, "activation": "tanh"}},
                      {"class": "Dense", "config": {"units": 4}}],
           "loss": {"class": "SoftmaxCrossEntropy", "config": {}},
           "optimizer": {"class": "Adam", "config": {"lr": 0.01}},
           "fit": {"epochs": 20, "batch_size": 32, "seed": 0}}
    path = tmp_path / "blobs.json"
    path.write_text(json.dumps(cfg))
    return path, cfg


@pytest.mark.parametrize("name", list(zoo.PRESETS))
def test_every_preset_is_a_run_file_that_trains_the_same_weights(name, tmp_path, capsys, mnist_npz):
    code, out, _ = cli(capsys, "config", "--model", name, "--seed", "3")
    assert code == 0
    (tmp_path / "run.json").write_text(out)
    data = ["--data", mnist_npz] if zoo.get(name).data == "mnist" else []
    common = ["--epochs", "1", "--quiet", *data]
    assert cli(capsys, "train", "--model", name, "--seed", "3", *common, "--out", tmp_path / "a")[0] == 0
    assert cli(capsys, "train", "--config", tmp_path / "run.json", *common, "--out", tmp_path / "b")[0] == 0
    a, b = fastnn.load(tmp_path / "a"), fastnn.load(tmp_path / "b")
    assert a.get_config() == b.get_config()
    np.testing.assert_array_equal(a.params, b.params)


def test_a_run_file_trains_and_evaluates_any_npz_data_set(tmp_path, capsys, blobs_npz):
    path, _ = blobs_config(tmp_path)
    code, out, err = cli(capsys, "train", "--config", path, "--data", blobs_npz, "--quiet", "--json",
                         "--out", tmp_path / "m.fastnn")
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["test_accuracy"] > 0.9
    code, out, err = cli(capsys, "evaluate", tmp_path / "m.fastnn", "--data", blobs_npz, "--json")
    assert code == 0 and json.loads(out)["total"] == 100, err
    code, _, err = cli(capsys, "evaluate", tmp_path / "m.fastnn")  # no --data: MNIST does not fit
    assert code == 2 and "not MNIST's" in err


def test_an_npz_data_set_shuffles_and_streams(tmp_path, capsys, mnist_npz):
    code, _, err = cli(capsys, "shuffle", "--data", mnist_npz, "--epochs", "2", "--out", tmp_path / "s.shuf")
    assert code == 0, err
    code, out, err = cli(capsys, "train", "--model", "mlp", "--stream", tmp_path / "s.shuf", "--data",
                         mnist_npz, "--quiet", "--json")
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["epochs"] == 2 and summary["steps"] == 12 and summary["test_accuracy"] > 0.5


def test_resume_of_a_config_run_needs_only_the_checkpoint(tmp_path, capsys, blobs_npz, monkeypatch):
    path, _ = blobs_config(tmp_path)
    args = ["--data", blobs_npz, "--quiet"]
    assert cli(capsys, "train", "--config", path, *args, "--out", tmp_path / "full")[0] == 0
    check = loop._check_interrupt

    def crash_at_100(state, callbacks, interrupted):  # a crash mid-run, after the checkpoint of step 74
        if state.global_step >= 100:
            raise KeyboardInterrupt("crash")
        check(state, callbacks, interrupted)

    monkeypatch.setattr(loop, "_check_interrupt", crash_at_100)
    ckpt = tmp_path / "c.ckpt"
    assert cli(capsys, "train", "--config", path, *args, "--checkpoint", ckpt, "--checkpoint-every", "37")[0] == 130
    monkeypatch.undo()
    assert fastnn.load_checkpoint(ckpt)[1][0]["global_step"] == 74
    os.remove(path)  # the run file is recorded in the checkpoint: --resume alone continues
    assert cli(capsys, "train", "--resume", ckpt, "--quiet", "--out", tmp_path / "again")[0] == 0
    np.testing.assert_array_equal(fastnn.load(tmp_path / "again").params, fastnn.load(tmp_path / "full").params)


def mutate(cfg):
    """Strategies for run files that break the schema somewhere (or not)."""
    junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=True),
                     st.text(max_size=5), st.lists(st.integers(-2, 3), max_size=4),
                     st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
    paths = [("format",), ("version",), ("input_shape",), ("seed",), ("dtype",), ("layers",),
             ("layers", 0), ("layers", 0, "class"), ("layers", 0, "config"), ("layers", 0, "config", "units"),
             ("layers", 1, "config", "activation"), ("loss",), ("loss", "class"), ("optimizer", "config", "lr"),
             ("optimizer", "class"), ("fit",), ("fit", "epochs"), ("fit", "batch_size"), ("fit", "data"),
             ("fit", "shuffle"), ("fit", "stop_below_loss"), ("extra",), ("fit", "extra")]

    @st.composite
    def edits(draw):
        new = json.loads(json.dumps(cfg))
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(paths))
            node = new
            for key in path[:-1]:
                node = node[key] if isinstance(node, (dict, list)) and (
                    key in node if isinstance(node, dict) else key < len(node)) else None
                if node is None:
                    break
            if isinstance(node, dict) or (isinstance(node, list) and path[-1] < len(node)):
                if draw(st.booleans()) and isinstance(node, dict):
                    node.pop(path[-1], None)
                else:
                    node[path[-1]] = draw(junk)
        return new
    return edits()


@FUZZ
@given(data=st.data())
def test_bad_run_files_end_in_one_line_and_exit_2(tmp_path_factory, capsys, blobs_npz, data):
    tmp = tmp_path_factory.mktemp("fuzz")
    _, cfg = blobs_config(tmp)
    cfg["fit"]["epochs"] = 1
    bad = data.draw(mutate(cfg))
    (tmp / "bad.json").write_text(json.dumps(bad))
    code, _, err = cli(capsys, "train", "--config", tmp / "bad.json", "--data", blobs_npz, "--quiet")
    assert code in (0, 2), err
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("fastnn: error:") and len(err) < 1000, err


def npz_cases():
    good = dict(x_train=np.zeros((8, 5), np.float32), y_train=np.zeros(8, np.int64),
                x_test=np.zeros((4, 5), np.float32), y_test=np.zeros(4, np.int64))
    arrays = st.one_of(
        st.sampled_from([np.zeros((8, 6), np.float32), np.full((8, 5), np.nan, np.float32),
                         np.zeros((8,), np.float32), np.array(["a"] * 8), np.zeros((0, 5), np.float32),
                         np.full(8, -1), np.full(8, 9), np.zeros((8, 1)), np.zeros(7, np.int64),
                         np.zeros(8, np.float32), np.zeros((8, 5), np.complex64)]))
    return good, arrays


@FUZZ
@given(data=st.data())
def test_bad_npz_files_end_in_one_line_and_exit_2(tmp_path_factory, capsys, data):
    tmp = tmp_path_factory.mktemp("npz")
    path, _ = blobs_config(tmp)
    good, arrays = npz_cases()
    case = dict(good)
    for key in data.draw(st.lists(st.sampled_from(sorted(good)), min_size=1, max_size=2, unique=True)):
        if data.draw(st.booleans()):
            case[key] = data.draw(arrays)
        else:
            del case[key]
    np.savez(tmp / "bad.npz", **case)
    raw = (tmp / "bad.npz").read_bytes()
    if data.draw(st.booleans()):  # damaged bytes too
        at = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1:] if data.draw(st.booleans()) else raw[:at]
        (tmp / "bad.npz").write_bytes(raw)
    code, _, err = cli(capsys, "train", "--config", path, "--data", tmp / "bad.npz", "--quiet", "--epochs", "1")
    assert code in (0, 2), err
    if code == 2:
        assert err.count("\n") == 1 and "Traceback" not in err, err
