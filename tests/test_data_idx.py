"""IDX reading and writing: round trips, chunked reads, and every corruption case."""
import gzip

import numpy as np
import pytest

from fastnn.data import IdxError, IdxReader, mnist_files, read_idx, read_labeled, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_round_trip(tmp_path, dtype, name, rng):
    data = (rng.standard_normal((7, 3, 5)) * 50).astype(dtype)
    write_idx(tmp_path / name, data)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.dtype(dtype) and back.shape == data.shape
    np.testing.assert_array_equal(back, data)
    assert (tmp_path / name).read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\0\0")


@pytest.mark.parametrize("name", ["c.idx", "c.idx.gz"])
def test_chunked_reads_match_whole_file(tmp_path, name, rng):
    data = rng.integers(0, 256, (1000, 4, 4)).astype(np.uint8)
    write_idx(tmp_path / name, data)
    with IdxReader(tmp_path / name) as reader:
        assert len(reader) == 1000 and reader.shape == (1000, 4, 4)
        chunks = [c.copy() for c in reader.iter_chunks(300)]
        np.testing.assert_array_equal(np.concatenate(chunks), data)
        np.testing.assert_array_equal(reader.read(10, 5), data[10:15])  # backward seek
        out = np.empty((3, 4, 4), np.uint8)
        assert reader.read(997, 3, out=out) is out
        with pytest.raises(IndexError):
            reader.read(999, 2)


def _valid(tmp_path):
    write_idx(tmp_path / "v.idx", np.arange(24, dtype=np.uint8).reshape(6, 2, 2))
    return (tmp_path / "v.idx").read_bytes()


@pytest.mark.parametrize("mutate,word", [
    (lambda b: b[:-1], "truncated"),
    (lambda b: b[:6], "truncated"),
    (lambda b: b + b"\0", "trailing"),
    (lambda b: b"\x01" + b[1:], "magic"),
    (lambda b: b[:2] + b"\x07" + b[3:], "type code"),
    (lambda b: b[:3] + b"\x00" + b[4:], "zero dimensions"),
    (lambda b: b[:4] + (10**9).to_bytes(4, "big") + b[8:], "truncated"),
    (lambda b: b"", "truncated"),
])
def test_corrupt_files_raise_naming_file_and_offset(tmp_path, mutate, word):
    bad = tmp_path / "bad.idx"
    bad.write_bytes(mutate(_valid(tmp_path)))
    with pytest.raises(IdxError, match=word) as info:
        read_idx(bad)
    assert "bad.idx" in str(info.value) and "byte" in str(info.value)


def test_truncated_and_trailing_gzip_files(tmp_path):
    raw = _valid(tmp_path)
    (tmp_path / "t.gz").write_bytes(gzip.compress(raw[:-3]))
    with pytest.raises(IdxError, match="truncated"):
        read_idx(tmp_path / "t.gz")
    (tmp_path / "x.gz").write_bytes(gzip.compress(raw + b"junk"))
    with pytest.raises(IdxError, match="trailing"):
        read_idx(tmp_path / "x.gz")
    (tmp_path / "g.gz").write_bytes(gzip.compress(raw)[:-12])
    with pytest.raises(IdxError, match="g.gz"):
        read_idx(tmp_path / "g.gz")


def test_labeled_pair_checks_counts_and_label_range(tmp_path):
    write_idx(tmp_path / "img", np.zeros((4, 2, 2), np.uint8))
    write_idx(tmp_path / "lab", np.array([0, 1, 9, 2], np.uint8))
    images, labels = read_labeled(tmp_path / "img", tmp_path / "lab")
    assert labels.dtype == np.int64 and list(labels) == [0, 1, 9, 2]
    write_idx(tmp_path / "bad_lab", np.array([0, 1, 10, 2], np.uint8))
    with pytest.raises(IdxError, match=r"label 10 at byte 10 \(record 2\)"):
        read_labeled(tmp_path / "img", tmp_path / "bad_lab")
    write_idx(tmp_path / "short", np.array([0, 1, 2], np.uint8))
    with pytest.raises(IdxError, match="3 labels"):
        read_labeled(tmp_path / "img", tmp_path / "short")


def test_mnist_files_lists_what_is_missing(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((1, 2, 2), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(1, np.uint8))
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.*t10k-labels-idx1-ubyte"):
        mnist_files(tmp_path)


def test_write_is_atomic_and_refuses_unsupported_dtypes(tmp_path):
    path = tmp_path / "keep.idx"
    write_idx(path, np.ones(3, np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        write_idx(path, np.ones(3, np.complex64))
    np.testing.assert_array_equal(read_idx(path), np.ones(3, np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["keep.idx"]


def test_label_offsets_count_bytes_for_wider_label_types(tmp_path):
    write_idx(tmp_path / "img", np.zeros((4, 2, 2), np.uint8))
    write_idx(tmp_path / "lab32", np.array([0, 1, 2, -1], np.int32))
    with pytest.raises(IdxError, match=r"lab32: label -1 at byte 20 \(record 3\)"):
        read_labeled(tmp_path / "img", tmp_path / "lab32")
    write_idx(tmp_path / "lab2d", np.zeros((4, 1), np.uint8))
    with pytest.raises(IdxError, match="lab2d: labels must be 1-D"):
        read_labeled(tmp_path / "img", tmp_path / "lab2d")


def test_absurd_gzip_header_is_refused_before_allocating(tmp_path):
    raw = bytes([0, 0, 8, 3]) + (10**6).to_bytes(4, "big") + (10**3).to_bytes(4, "big") * 2
    (tmp_path / "huge.gz").write_bytes(gzip.compress(raw + bytes(100)))
    with pytest.raises(IdxError, match="huge.gz.*byte 4"):
        IdxReader(tmp_path / "huge.gz")


def test_real_mnist_files_and_labels():
    from support import mnist_dir
    files = mnist_files(mnist_dir())
    images, labels = read_labeled(files["train_images"], files["train_labels"])
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,) and labels.max() == 9
    with IdxReader(files["test_images"]) as reader:
        assert reader.shape == (10000, 28, 28) and reader.dtype == np.uint8
        assert sum(len(c) for c in reader.iter_chunks(4096)) == 10000
