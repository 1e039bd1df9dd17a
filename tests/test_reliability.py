"""Reliability: exact resume after SIGKILL/SIGINT, divergence, damaged files, fuzzing of the
readers, the loader and the kernel boundary, threads, and training under a 512 MiB limit.

Subprocess tests run `python -m fastnn.cli` on the bundled subset (copied under canonical
names) so a kill lands in a real process; each run takes about a second.
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fastnn
from fastnn import SGD, Adam, Dense, RandomSearch, Sequential, SoftmaxCrossEntropy, datasets, ops
from fastnn import CheckpointError, load_checkpoint, resume
from fastnn.train.callbacks import Callback, Checkpoint, EarlyStopping
from fastnn.data import IdxError, IdxReader, ShuffledFileError, ShuffledStream, read_idx, write_idx, write_shuffled
from fastnn.errors import ModelFileError, TrainingDiverged

HERE = os.path.dirname(os.path.abspath(__file__))
FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


# -- helpers ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with the bundled subset under canonical names and a 3-epoch shuffled file."""
    folder = tmp_path_factory.mktemp("reliability")
    (folder / "mnist").mkdir()
    for name in os.listdir(datasets.SUBSET_DIR):
        if name.startswith(datasets.SUBSET_PREFIX) and name.endswith(".gz"):
            shutil.copy(os.path.join(datasets.SUBSET_DIR, name),
                        folder / "mnist" / name[len(datasets.SUBSET_PREFIX):])
    mnist = str(folder / "mnist")
    write_shuffled(f"{mnist}/train-images-idx3-ubyte.gz", f"{mnist}/train-labels-idx1-ubyte.gz",
                   folder / "train.shuf", epochs=3, seed=0)
    return folder


def _default_sigint():
    # A shell starts background jobs with SIGINT ignored, and the child would inherit that
    # (then Ctrl-C does nothing): the children here get Ctrl-C as a terminal would send it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(*args, cwd=None):
    """Popen of `python -m fastnn.cli ARGS` (stdout/stderr captured as text)."""
    env = dict(os.environ, FASTNN_DATA=os.devnull)
    return subprocess.Popen([sys.executable, "-m", "fastnn.cli", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for(path, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, f"child ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)


def data_args(work, mode):
    return ["--data", work / "mnist"] if mode == "memory" else ["--stream", work / "train.shuf",
                                                               "--data", work / "mnist"]


TRAIN = ["train", "--model", "mlp", "--batch-size", "3", "--quiet", "--seed", "3"]
EPOCHS = {"memory": ["--epochs", "3"], "stream": ["--epochs", "3"]}  # 3000 steps either way
KILLS = 3


# -- 1. exact resume after SIGKILL, CLI, in-memory and stream ------------------------------------
@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_sigkill_at_random_steps_then_resume_is_bit_identical(work, tmp_path, mode):
    ref = tmp_path / "ref.fastnn"
    code, _, err = finish(cli(*TRAIN, *EPOCHS[mode], *data_args(work, mode), "--out", ref))
    assert code == 0, err
    rnd, killed = random.Random(mode), 0
    for attempt in range(KILLS):
        ckpt, out = tmp_path / f"run{attempt}.ckpt", tmp_path / f"res{attempt}.fastnn"
        proc = cli(*TRAIN, *EPOCHS[mode], *data_args(work, mode), "--checkpoint", ckpt,
                   "--checkpoint-every", 23)
        wait_for(ckpt, proc)
        time.sleep(rnd.uniform(0, 0.25))
        proc.send_signal(signal.SIGKILL)
        code, _, _ = finish(proc)
        killed += code == -signal.SIGKILL
        step = load_checkpoint(ckpt)[1][0]["global_step"]
        # The checkpoint recorded the run's arguments: --resume alone continues it.
        code, _, err = finish(cli("train", "--resume", ckpt, "--quiet", "--checkpoint", ckpt,
                                  "--checkpoint-every", 23, "--out", out))
        assert code == 0, err
        assert load_checkpoint(ckpt)[1][0]["global_step"] == 3000 and step < 3000
        np.testing.assert_array_equal(fastnn.load(out).params, fastnn.load(ref).params)
    print(f"{mode}: {killed} of {KILLS} runs SIGKILLed mid-run, all resumed bit-identically")
    assert killed >= 2, "the runs finished before the kill: make them longer"


def test_resume_arguments_must_agree_with_the_recorded_run(work, tmp_path):
    ckpt = tmp_path / "c.ckpt"
    code, _, err = finish(cli(*TRAIN, "--epochs", "1", *data_args(work, "memory"), "--checkpoint", ckpt))
    assert code == 0, err
    for flag, value in (("--epochs", "5"), ("--model", "nielsen"), ("--seed", "4"), ("--data", tmp_path)):
        code, _, err = finish(cli("train", "--resume", ckpt, flag, value))
        assert code == 2 and flag in err and "differs from the run in" in err and err.count("\n") == 1, err
    code, _, err = finish(cli("train", "--resume", ckpt, "--model", "mlp", "--epochs", "1", "--quiet"))
    assert code == 0, err  # the same values are fine


def test_outputs_are_checked_before_training_and_never_replace_an_input(work, tmp_path):
    stream, images = work / "train.shuf", work / "mnist" / "train-images-idx3-ubyte.gz"
    before = {p: p.read_bytes() for p in (stream, images)}
    (tmp_path / "folder").mkdir()
    cases = [(("--out", tmp_path / "nodir" / "m.fastnn"), "does not exist"),
             (("--out", tmp_path / "folder"), "is a directory"),
             (("--plot", tmp_path / "nodir" / "p.png"), "does not exist"),
             (("--out", stream), "is an input"),
             (("--checkpoint", stream), "is an input"),
             (("--out", images), "is an input"),
             (("--out", tmp_path / "a", "--checkpoint", tmp_path / "a"), "different files")]
    for extra, word in cases:
        start = time.monotonic()
        code, out, err = finish(cli(*TRAIN, *data_args(work, "stream"), *extra))
        assert code == 2 and word in err and err.count("\n") == 1 and "Epoch" not in out, (extra, err)
        assert time.monotonic() - start < 20
    os.symlink(stream, tmp_path / "link.shuf")
    code, _, err = finish(cli(*TRAIN, *data_args(work, "stream"), "--out", tmp_path / "link.shuf"))
    assert code == 2 and "is an input" in err, err
    code, _, err = finish(cli("shuffle", "--data", work / "mnist", "--epochs", "1", "--out", images))
    assert code == 2 and "is an input" in err, err
    assert all(p.read_bytes() == b for p, b in before.items())


def test_a_write_that_fails_after_training_keeps_the_model(work, tmp_path, monkeypatch, capsys):
    """--out on a full disk (a 64 KiB tmpfs where the system allows mounting one, else a
    simulated ENOSPC): one line, exit 2, and the trained model saved where the line says."""
    from fastnn.cli import main
    target = tmp_path / "small"
    target.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(target)],
                             capture_output=True).returncode == 0
    try:
        if not mounted:
            def disk_full(self, path):
                raise OSError(28, "No space left on device")
            monkeypatch.setattr(fastnn.Sequential, "save", disk_full)
        monkeypatch.chdir(tmp_path)
        code = main([*TRAIN, "--epochs", "1", *map(str, data_args(work, "memory")), "--out", str(target / "m.fastnn")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "No space left" in err, err
        kept = err.rsplit("saved in ", 1)[1].strip()
        monkeypatch.undo()
        assert fastnn.load(kept).num_params == fastnn.zoo.get("mlp").build().num_params
    finally:
        if mounted:
            subprocess.run(["umount", str(target)])


def test_evaluate_refuses_models_that_cannot_score_mnist_in_one_line(work, tmp_path):
    from fastnn import MSE, BinaryCrossEntropy
    models = {"noloss": Sequential([Dense(10)], input_shape=(784,)),
              "five": Sequential([Dense(5)], loss=SoftmaxCrossEntropy(), input_shape=(784,)),
              "bce": Sequential([Dense(1)], loss=BinaryCrossEntropy(), input_shape=(784,)),
              "shape": Sequential([Dense(10)], loss=MSE(), input_shape=(30,))}
    for name, model in models.items():
        model.save(tmp_path / name)
        code, _, err = finish(cli("evaluate", tmp_path / name, "--data", work / "mnist"))
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (name, err)
    code, _, err = finish(cli("train", "--model", "mlp", "--stream", work, "--data", work / "mnist"))
    assert code == 2 and "not a regular file" in err and str(work) in err, err


# -- 1b. the Python API: every optimizer's state, EarlyStopping state, history ------------------
def small_problem():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 4)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)


OPTIMIZERS = {"sgd-momentum": lambda: SGD(lr=0.1, momentum=0.9), "adam": lambda: Adam(lr=0.01),
              "random-search": lambda: RandomSearch(step=0.05, seed=5)}


class Crash(Callback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, step, loss):
        if step == self.at:
            raise SystemExit("crash")


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_resume_from_every_step_matches_an_uninterrupted_run(tmp_path, name):
    x, y = small_problem()

    def model():
        return Sequential([Dense(8, "relu"), Dense(3)], loss=SoftmaxCrossEntropy(),
                          optimizer=OPTIMIZERS[name](), input_shape=(4,), seed=1)

    def stopper():
        return EarlyStopping(monitor="train_loss", patience=0, min_delta=10.0)  # stops at epoch 2

    full = model()
    history = full.fit(x, y, epochs=4, batch_size=16, seed=2, verbose=0, callbacks=[stopper()])
    steps = len(history.step_loss)
    for at in range(2, steps + 1, 3):
        path = tmp_path / f"{at}.ckpt"
        with pytest.raises(SystemExit):
            model().fit(x, y, epochs=4, batch_size=16, seed=2, verbose=0,
                        callbacks=[Crash(at), stopper(), Checkpoint(path, every_n_steps=1)])
        resumed, h = resume(path, x, y, verbose=0, callbacks=[stopper()])
        np.testing.assert_array_equal(resumed.params, full.params)
        assert h.step_loss == history.step_loss and h.epoch_train_loss == history.epoch_train_loss
        assert h.stopped_reason == history.stopped_reason


def test_resume_refuses_other_data_and_plain_model_files(tmp_path):
    x, y = small_problem()
    m = Sequential([Dense(3)], loss=SoftmaxCrossEntropy(), optimizer=SGD(0.1), input_shape=(4,), seed=0)
    m.fit(x, y, epochs=1, verbose=0, callbacks=[Checkpoint(tmp_path / "c.ckpt")])
    with pytest.raises(CheckpointError, match="samples"):
        resume(tmp_path / "c.ckpt", x[:100], y[:100])
    m.save(tmp_path / "m.fastnn")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        resume(tmp_path / "m.fastnn", x, y)
    assert fastnn.load(tmp_path / "c.ckpt").num_params == m.num_params  # a checkpoint is a model file


# -- damaged checkpoints, failed writes, divergence -------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "c.ckpt"
    x, y = small_problem()
    m = Sequential([Dense(5, "relu"), Dense(3)], loss=SoftmaxCrossEntropy(), optimizer=Adam(),
                   input_shape=(4,), seed=0)
    m.fit(x, y, epochs=1, batch_size=50, verbose=0, callbacks=[Checkpoint(path)])
    return path.read_bytes()


def test_truncated_or_flipped_checkpoint_is_detected(tmp_path, checkpoint_bytes):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(checkpoint_bytes[:len(checkpoint_bytes) // 2])
    with pytest.raises(ModelFileError, match="not a readable fastnn checkpoint"):
        load_checkpoint(path)
    # A flip inside the params data or anywhere in the file: zip CRC or the sha256 digest.
    start = checkpoint_bytes.index(b"params.npy") + 200
    for at in (start, len(checkpoint_bytes) // 3):
        damaged = bytearray(checkpoint_bytes)
        damaged[at] ^= 0x10
        path.write_bytes(bytes(damaged))
        with pytest.raises(ModelFileError, match="checkpoint"):
            load_checkpoint(path)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    x, y = small_problem()
    path = tmp_path / "c.ckpt"
    m = Sequential([Dense(3)], loss=SoftmaxCrossEntropy(), optimizer=SGD(0.1), input_shape=(4,), seed=0)
    m.fit(x, y, epochs=1, verbose=0, callbacks=[Checkpoint(path, every_n_steps=2)])
    good = path.read_bytes()

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match="No space"):
        m.fit(x, y, epochs=1, verbose=0, callbacks=[Checkpoint(path, every_n_steps=2)])
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["c.ckpt"]


def test_nan_weights_never_overwrite_the_last_good_checkpoint(tmp_path):
    x, y = small_problem()
    path = tmp_path / "c.ckpt"

    class Poison(Callback):  # weights turn NaN after a step whose loss was still finite
        def on_step_end(self, step, loss):
            if step == 5:
                self.model.params[0] = np.nan

    m = Sequential([Dense(3)], loss=SoftmaxCrossEntropy(), optimizer=SGD(0.1), input_shape=(4,), seed=0)
    with pytest.raises(TrainingDiverged, match="after step 5"):
        m.fit(x, y, epochs=1, verbose=0, callbacks=[Poison(), Checkpoint(path, every_n_steps=1)])
    model, (state, _), _ = load_checkpoint(path)
    assert state["global_step"] == 4 and np.isfinite(model.params).all()


def test_cli_divergence_is_one_line_exit_2_and_keeps_the_checkpoint(work, tmp_path):
    ckpt = tmp_path / "c.ckpt"
    code, out, err = finish(cli("train", "--model", "mlp", "--lr", "1e10", "--epochs", "2",
                                "--quiet", "--data", work / "mnist", "--checkpoint", ckpt,
                                "--checkpoint-every", "1"))
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and "at step" in err and "last good checkpoint" in err, err
    model, (state, _), _ = load_checkpoint(ckpt)
    assert np.isfinite(model.params).all() and state["global_step"] >= 1


# -- 2. SIGINT -----------------------------------------------------------------------------------
@pytest.mark.parametrize("with_checkpoint", [True, False])
def test_sigint_saves_a_checkpoint_exits_130_and_resumes_exactly(work, tmp_path, with_checkpoint):
    ref = tmp_path / "ref.fastnn"
    # enough epochs that Ctrl-C, sent when epoch 1 is printed, lands mid-run: an epoch here is
    # a few ms of training in fit's compiled runs, plus its validation
    epochs = "40"
    assert finish(cli(*TRAIN, "--epochs", epochs, *data_args(work, "memory"), "--out", ref))[0] == 0
    ckpt = tmp_path / ("c.ckpt" if with_checkpoint else "fastnn-interrupted.ckpt")
    extra = ["--checkpoint", ckpt, "--checkpoint-every", 50] if with_checkpoint else []
    proc = cli(*TRAIN[:-3], "--seed", "3", "--epochs", epochs, *data_args(work, "memory"), *extra,
               cwd=tmp_path)  # not --quiet: send Ctrl-C once epoch 1 is printed
    while not proc.stdout.readline().startswith("Epoch 1:"):
        assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code == 130, err
    assert f"checkpoint saved to {ckpt.name if not with_checkpoint else ckpt}" in err and \
        err.count("\n") == 1, err
    code, _, err = finish(cli(*TRAIN, "--epochs", epochs, *data_args(work, "memory"), "--resume", ckpt,
                              "--out", tmp_path / "res.fastnn", cwd=tmp_path))
    assert code == 0, err
    np.testing.assert_array_equal(fastnn.load(tmp_path / "res.fastnn").params, fastnn.load(ref).params)


# -- 3. fuzzing the readers and the loader -----------------------------------------------------
IDX_ERRORS = (IdxError, FileNotFoundError)


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory, work):
    folder = tmp_path_factory.mktemp("valid")
    images = np.random.default_rng(0).integers(0, 256, (40, 5, 6)).astype(np.uint8)
    write_idx(folder / "a.idx", images)
    write_idx(folder / "a.idx.gz", images)
    write_idx(folder / "f.idx", images.astype(np.float32))
    write_idx(folder / "i.idx", images[:, :1, :2])
    write_idx(folder / "l.idx", np.arange(40, dtype=np.uint8) % 10)
    write_shuffled(folder / "i.idx", folder / "l.idx", folder / "s.shuf", epochs=2, seed=1)
    write_shuffled(folder / "a.idx", folder / "l.idx", folder / "t.shuf", epochs=2, seed=1)
    m = Sequential([Dense(4, "relu"), Dense(2)], loss=SoftmaxCrossEntropy(), optimizer=Adam(),
                   input_shape=(3,), seed=0)
    m.save(folder / "m.fastnn")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def damaged(valid_files, names):
    """Random bytes, or a valid file truncated, bit-flipped or with a byte run overwritten."""
    raw = st.binary(max_size=300).map(lambda b: ("random", b))

    @st.composite
    def edit(draw):
        data = bytearray(valid_files[draw(st.sampled_from(names))])
        kind = draw(st.sampled_from(["truncate", "flip", "flip", "overwrite"]))
        if kind == "truncate":
            return kind, bytes(data[:draw(st.integers(0, len(data) - 1))])
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(data) - 1))
            if kind == "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            else:
                data[at:at + 4] = draw(st.binary(min_size=4, max_size=4))
        return kind, bytes(data)

    return st.one_of(raw, edit(), edit())


def read_everything_idx(path):
    read_idx(path)


def read_everything_shuffled(path):
    with ShuffledStream(path, 7) as stream:
        return [np.concatenate([x.reshape(len(x), -1), y[:, None]], axis=1)
                for epoch in stream.remaining_epochs() for x, y in stream.iter_epoch(epoch)]


CASES = {"idx": 0, "shuffled": 0, "model": 0}


def fuzz_one(tmp_path, data, reader, errors, bound=16 * 2**20):
    """The reader ends in one of `errors` with a message (or succeeds: a flip can hit a pixel of
    an unchecksummed IDX file), within `bound` bytes of Python allocations."""
    path = tmp_path / "fuzz.bin"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        return reader(path)
    except errors as exc:
        assert str(exc)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < bound, f"peak {peak} bytes"


def test_fuzz_idx_reader(tmp_path, valid_files):
    @settings(FUZZ, max_examples=600)
    @given(damaged(valid_files, ["a.idx", "a.idx.gz", "f.idx", "i.idx"]))
    def run(case):
        CASES["idx"] += 1
        fuzz_one(tmp_path, case[1], read_everything_idx, IDX_ERRORS)

    run()


def test_fuzz_shuffled_reader(tmp_path, valid_files):
    @settings(FUZZ, max_examples=500)
    @given(damaged(valid_files, ["s.shuf", "t.shuf"]))
    def run(case):
        CASES["shuffled"] += 1
        kind, data = case
        try:
            got = fuzz_one(tmp_path, data, read_everything_shuffled, ())
        except ShuffledFileError as exc:
            assert str(exc)
        else:  # records are checksummed: a clean read (an edit in padding) gives the true records
            want = [read_everything_shuffled(tmp_path / n) for n in ("s.shuf", "t.shuf")
                    if (tmp_path / n).write_bytes(valid_files[n])]
            assert any(len(got) == len(w) and all(np.array_equal(a, b) for a, b in zip(got, w))
                       for w in want), kind

    run()


def test_fuzz_model_loader(tmp_path, valid_files):
    (tmp_path / "m.fastnn").write_bytes(valid_files["m.fastnn"])
    original = fastnn.load(tmp_path / "m.fastnn")

    @settings(FUZZ, max_examples=600)
    @given(damaged(valid_files, ["m.fastnn"]))
    def run(case):
        CASES["model"] += 1
        kind, data = case
        try:
            model = fuzz_one(tmp_path, data, fastnn.load, ())
        except ModelFileError as exc:
            assert str(exc)
        else:  # sha256 over every entry: what loads (an edit in zip metadata) is the true model
            np.testing.assert_array_equal(model.params, original.params)
            assert model.get_config() == original.get_config()

    run()
    print(f"fuzzed cases: {CASES}")


def test_headers_claiming_10_to_the_12_records_are_refused_before_allocating(tmp_path):
    header = bytes([0, 0, 0x08, 2]) + (10**12 // 2**20).to_bytes(4, "big") + (2**20).to_bytes(4, "big")
    (tmp_path / "raw.idx").write_bytes(header + b"\0" * 100)
    import gzip
    (tmp_path / "big.gz").write_bytes(gzip.compress(header + b"\0" * 100))
    for name in ("raw.idx", "big.gz"):
        with pytest.raises(IdxError, match="header at byte 4"):
            fuzz_one(tmp_path / "..", b"", lambda _: IdxReader(tmp_path / name).read(0, 10**6), (), 2**20)
    # An npz entry whose npy header claims 10^12 float64.
    import io
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    npy = buf.getvalue().replace(b"(3,)", b"(10**12,)".replace(b"10**12", str(10**12).encode()))
    with zipfile.ZipFile(tmp_path / "m.fastnn", "w") as zf:
        zf.writestr("params.npy", npy)
    with pytest.raises(ModelFileError, match="more than the 268435456"):
        fuzz_one(tmp_path, (tmp_path / "m.fastnn").read_bytes(), fastnn.load, (), 2**20)


def test_fuzz_kernel_boundary_in_a_subprocess():
    proc = subprocess.run([sys.executable, os.path.join(HERE, "fuzz_kernels_child.py"), "2000"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:], proc.stderr[-4000:])
    assert "cases 2000" in proc.stdout, proc.stdout
    print(proc.stdout.strip())


# -- 4. threads -------------------------------------------------------------------------------------
def run_in_threads(fns):
    results, errors = [None] * len(fns), []

    def call(i):
        try:
            results[i] = fns[i]()
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_two_threads_calling_kernels_get_single_threaded_results(rng):
    x = [rng.standard_normal((64, 3, 20, 20)).astype(np.float32) for _ in range(2)]
    w = rng.standard_normal((8, 3, 5, 5)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    d = [rng.standard_normal((256, 300)) for _ in range(2)]
    dw, db = rng.standard_normal((100, 300)), rng.standard_normal(100)
    jobs = [lambda i=i: [ops.conv2d_forward(x[i], w, b, padding=1) for _ in range(10)][-1] for i in range(2)]
    jobs += [lambda i=i: [ops.dense_forward(d[i], dw, db) for _ in range(20)][-1] for i in range(2)]
    expected = [job() for job in jobs]
    for _ in range(3):
        for got, want in zip(run_in_threads(jobs), expected):
            np.testing.assert_array_equal(got, want)


def test_two_threads_predicting_and_evaluating_on_one_model(rng):
    model = Sequential([Dense(32, "relu"), Dense(10)], loss=SoftmaxCrossEntropy(), optimizer=SGD(0.1),
                       input_shape=(50,), seed=0)
    xs = [rng.standard_normal((700, 50)).astype(np.float32) for _ in range(2)]
    ys = [rng.integers(0, 10, 700) for _ in range(2)]
    jobs = [lambda i=i: model.predict_proba(xs[i], batch_size=64) for i in range(2)]
    jobs += [lambda i=i: model.evaluate(xs[i], ys[i], batch_size=100)["loss"] for i in range(2)]
    expected = [job() for job in jobs]
    for _ in range(5):
        for got, want in zip(run_in_threads(jobs), expected):
            np.testing.assert_array_equal(got, want)


# -- 5. memory pressure -------------------------------------------------------------------------------
def test_stream_training_under_a_512_mib_address_space_limit(work):
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("prlimit (util-linux) is not installed")
    proc = subprocess.run([prlimit, "--as=536870912", sys.executable, "-m", "fastnn.cli", "train",
                           "--model", "mlp", "--stream", str(work / "train.shuf"), "--data",
                           str(work / "mnist"), "--epochs", "2", "--quiet", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"epochs": 2' in proc.stdout
