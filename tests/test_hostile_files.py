"""Issue 16, items 2 and 8 (the reader): a model or checkpoint file never takes more than a
bounded memory, never blocks, and messages quoting it stay short; replaced files keep their mode."""
import json
import os
import stat
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn import SGD, Dense, Sequential, SoftmaxCrossEntropy
from fastnn.atomic import atomic_write
from fastnn.serialize import MAX_ARCHITECTURE_BYTES, MAX_BYTES, ModelFileError, read_npz

GIB = 2**30


def _load_in_child(path, timeout=60):
    """(exit code, stdout, stderr) of fastnn.load(path) in a subprocess that prints its peak-RSS
    growth in bytes (ru_maxrss is KiB on Linux) and the error it got."""
    code = textwrap.dedent(f"""
        import resource, fastnn
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            fastnn.load({os.fspath(path)!r})
            result = "loaded"
        except fastnn.ModelFileError as exc:
            result = str(exc)
        growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
        print(growth)
        print(result)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def _assert_refused_small(path, word):
    code, out, err = _load_in_child(path)
    assert code == 0, err[-2000:]
    growth, message = out.split("\n", 1)
    assert word in message, message
    assert len(message) < 1000
    assert int(growth) < 64 * 2**20, f"peak RSS grew by {int(growth) / 2**20:.0f} MiB"


def _npy_header(f, dtype, shape):
    np.lib.format.write_array_header_1_0(f, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                             "shape": shape})


@pytest.fixture(scope="module")
def valid_arrays():
    model = Sequential([Dense(3)], loss=SoftmaxCrossEntropy(), optimizer=SGD(0.1), input_shape=(4,), seed=0)
    config = model.get_config()
    return model.params.copy(), config


@pytest.fixture(scope="module")
def bomb(tmp_path_factory, valid_arrays):
    """A few-MB file whose params entry inflates to 1 GiB of zeros (written in streamed chunks:
    the test never holds 1 GiB either)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.fastnn"
    params, config = valid_arrays
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("architecture.npy", _npy_bytes(np.frombuffer(json.dumps(config).encode(), np.uint8)))
        with zf.open("params.npy", "w", force_zip64=True) as f:
            _npy_header(f, np.float32, (GIB // 4,))
            zeros = bytes(2**20)
            for _ in range(GIB // len(zeros)):
                f.write(zeros)
    assert path.stat().st_size < 8 * 2**20
    return path


def _npy_bytes(array):
    import io
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


@pytest.fixture(scope="module")
def long_architecture(tmp_path_factory, valid_arrays):
    """A valid model whose JSON architecture is 1 GiB long (a padding string), streamed."""
    path = tmp_path_factory.mktemp("arch") / "arch.fastnn"
    params, config = valid_arrays
    head = json.dumps(config)[:-1].encode() + b', "padding": "'
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("params.npy", _npy_bytes(params))
        with zf.open("architecture.npy", "w", force_zip64=True) as f:
            _npy_header(f, np.uint8, (GIB,))
            f.write(head)
            left, pad = GIB - len(head) - 2, b"a" * 2**20
            while left:
                f.write(pad[:min(left, len(pad))])
                left -= min(left, len(pad))
            f.write(b'"}')
    return path


def test_a_small_file_inflating_to_1_gib_is_refused_within_bounded_memory(bomb):
    _assert_refused_small(bomb, "more than the")


def test_a_1_gib_architecture_is_refused_within_bounded_memory(long_architecture):
    _assert_refused_small(long_architecture, f"more than the {MAX_ARCHITECTURE_BYTES}")


def test_dev_zero_is_refused_at_once():
    _assert_refused_small("/dev/zero", "not a regular file")


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    _assert_refused_small(tmp_path / "fifo", "not a regular file")  # the child times out if it blocks


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="a directory"):
        fastnn.load(tmp_path)


def test_bounds_are_arguments_and_count_every_entry(tmp_path, valid_arrays):
    params, config = valid_arrays
    model = Sequential.from_config(config)
    model.save(tmp_path / "m.fastnn")
    arrays = read_npz(tmp_path / "m.fastnn")
    total = sum(a.nbytes for a in arrays.values()) + 32  # + the digest
    assert read_npz(tmp_path / "m.fastnn", max_bytes=total).keys() == arrays.keys()
    with pytest.raises(ModelFileError, match="more than the"):
        read_npz(tmp_path / "m.fastnn", max_bytes=total - 1)
    with pytest.raises(ModelFileError, match="at most 2 entries"):
        read_npz(tmp_path / "m.fastnn", max_entries=2)
    with pytest.raises(ModelFileError, match="more than the 10 "):
        read_npz(tmp_path / "m.fastnn", max_architecture_bytes=10)
    with pytest.raises(ValueError, match="max_bytes must be a positive int"):
        read_npz(tmp_path / "m.fastnn", max_bytes=0)
    assert MAX_BYTES == 256 * 2**20  # the documented default (docs/reliability.md)


def test_a_file_larger_than_the_bound_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.fastnn"
    with open(path, "wb") as f:
        f.truncate(2**20)  # sparse: no disk used
    with pytest.raises(ModelFileError, match="1048576 bytes, more than"):
        read_npz(path, max_bytes=2**10, max_entries=4)


def test_bzip2_entries_are_refused(tmp_path, valid_arrays):
    path = tmp_path / "b.fastnn"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("params.npy", _npy_bytes(valid_arrays[0]))
    with pytest.raises(ModelFileError, match="compression method 12"):
        fastnn.load(path)


def test_an_entry_with_trailing_data_is_refused(tmp_path, valid_arrays):
    path = tmp_path / "t.fastnn"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("params.npy", _npy_bytes(valid_arrays[0]) + b"\0" * 8)
    with pytest.raises(ModelFileError, match="header says"):
        fastnn.load(path)


def test_messages_quoting_a_file_are_cut(tmp_path):
    path = tmp_path / "n.fastnn"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x" * 60000 + ".npy", b"")  # zip names stop at 64 KiB
    with pytest.raises(ModelFileError) as info:
        fastnn.load(path)
    assert "unexpected entry" in str(info.value) and len(str(info.value)) < 600


# -- item 8: modes of replaced files -----------------------------------------------------------
def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "m.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    with atomic_write(path) as f:
        f.write(b"new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and path.read_bytes() == b"new"
    os.chmod(path, 0o640)
    with atomic_write(path) as f:
        f.write(b"newer")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_new_file_gets_the_umask_default_not_0600(tmp_path):
    previous = os.umask(0o027)
    try:
        with atomic_write(tmp_path / "new.bin") as f:
            f.write(b"x")
        with open(tmp_path / "plain.bin", "wb") as f:  # what open() gives, the reference
            f.write(b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == \
        stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode) == 0o640


def _model_file(path, config, arrays):
    """A digest-valid model file with this architecture and these entries (fastnn's writer)."""
    from fastnn.serialize import DIGEST, _digest
    arrays = dict(arrays, architecture=np.frombuffer(json.dumps(config).encode(), np.uint8))
    arrays[DIGEST] = np.frombuffer(_digest(arrays), np.uint8)
    with open(path, "wb") as f:  # a file object: np.savez would add ".npz" to a path
        np.savez(f, **arrays)


@pytest.mark.parametrize("units", [200_000, 10**9])
def test_an_architecture_larger_than_its_weights_is_refused_before_allocating(tmp_path, valid_arrays, units):
    params, config = valid_arrays
    config = dict(config, input_shape=[784],
                  layers=[{"class": "Dense", "config": {"units": units}}])
    _model_file(tmp_path / "big.fastnn", config, {"params": params})
    assert os.path.getsize(tmp_path / "big.fastnn") < 4096
    _assert_refused_small(tmp_path / "big.fastnn", "parameters")


@pytest.mark.parametrize("entries", [
    {"params": np.array(list("abcdefghijklmno"), dtype="U1")},
    {"when": np.array(["2026-01-01"], dtype="datetime64[D]")},
])
def test_digest_valid_files_with_foreign_entries_are_refused_or_ignored_cleanly(tmp_path, valid_arrays, entries):
    params, config = valid_arrays
    _model_file(tmp_path / "odd.fastnn", config, {"params": params, **entries})
    try:
        model = fastnn.load(tmp_path / "odd.fastnn")
    except ModelFileError as exc:
        assert len(str(exc)) < 1000
    else:
        np.testing.assert_array_equal(model.params, params)
    from fastnn.cli import main
    assert main(["evaluate", str(tmp_path / "odd.fastnn")]) == 2
