"""The streaming readers: ShuffledStream (position, resume, shards, checksums, fixed buffers,
flat memory, thread shutdown) and IdxBatches."""
import gc
import threading
import tracemalloc

import numpy as np
import pytest

from fastnn.data import IdxBatches, ShuffledFileError, ShuffledStream, write_shuffled
from test_data_shuffle import COLS, ROWS, indices, make_source

N = 5000  # records per epoch: 3 checksum blocks (2048 records), the last one partial


def read_all(path, batch_size=64, **kw):
    """[(source indices, labels) per epoch] read through a stream."""
    with ShuffledStream(path, batch_size, **kw) as stream:
        out = []
        for epoch in stream.remaining_epochs():
            got = [(indices(x), y.copy()) for x, y in stream.iter_epoch(epoch)]
            out.append((np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got])))
        return out


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stream")
    images, labels = make_source(folder, N)
    write_shuffled(images, labels, folder / "s.bin", epochs=3, seed=7)
    return folder / "s.bin"


def stream_threads():
    return [t for t in threading.enumerate() if t.name == "fastnn-stream"]


def test_each_epoch_is_a_permutation_with_matching_labels(shuffled):
    epochs = read_all(shuffled)
    assert len(epochs) == 3
    for idx, labels in epochs:
        assert sorted(idx) == list(range(N))
        np.testing.assert_array_equal(labels, idx % 10)
    assert not np.array_equal(epochs[0][0], epochs[1][0])


def test_facts_and_iterating_the_whole_stream(shuffled):
    with ShuffledStream(shuffled, 100) as stream:
        assert (stream.epochs, stream.records_per_epoch, stream.batches_per_epoch) == (3, N, 50)
        assert stream.position == (0, 0)
        assert sum(len(y) for _, y in stream) == 3 * N
        assert stream.position == (3, 0) and list(stream.remaining_epochs()) == []


@pytest.mark.parametrize("batch_size", [64, 2048, 777])
def test_start_resumes_at_exactly_the_next_record(shuffled, batch_size):
    full = np.concatenate([e[0] for e in read_all(shuffled, batch_size)])
    with ShuffledStream(shuffled, batch_size) as stream:
        batches = stream.iter_epoch(0)
        for _ in range(2):
            next(batches)
        saved = stream.position_index
        assert saved == 2 * batch_size and stream.position == (0, 2 * batch_size)
    for start in (saved, 2047, 2048, N - 1, N, N + 4321, 3 * N - 1):
        resumed = np.concatenate([e[0] for e in read_all(shuffled, batch_size, start=start)])
        np.testing.assert_array_equal(resumed, full[start:])


@pytest.mark.parametrize("world", [2, 3])
def test_shards_are_disjoint_and_cover_each_epoch(shuffled, world):
    parts = [read_all(shuffled, shard=(rank, world)) for rank in range(world)]
    for epoch in range(3):
        joined = np.concatenate([p[epoch][0] for p in parts])
        assert len(joined) == N and sorted(joined) == list(range(N))
    with ShuffledStream(shuffled, 10, shard=(1, world)) as stream:
        assert stream.batches_per_epoch == -(-stream.shard_records // 10)


def test_batch_shapes_layouts_and_fixed_buffers(shuffled):
    with ShuffledStream(shuffled, 1000, layout="nchw") as stream:
        assert stream.batches_per_epoch == 5
        seen = [(x, y) for x, y in stream.iter_epoch(0)]
        assert seen[0][0].shape == (1000, 1, ROWS, COLS) and seen[0][0].dtype == np.float32
        assert seen[0][1].dtype == np.int64
        assert all(np.shares_memory(x, stream.x) and np.shares_memory(y, stream.y) for x, y in seen)
        assert 0.0 <= stream.x.min() and stream.x.max() <= 1.0
    with ShuffledStream(shuffled, 128, drop_last=True) as stream:
        assert stream.batches_per_epoch == N // 128
        assert [len(y) for _, y in stream.iter_epoch(0)] == [128] * (N // 128)
    with ShuffledStream(shuffled, 3000) as stream:
        assert [x.shape for x, _ in stream.iter_epoch(0)] == [(3000, ROWS * COLS), (2000, ROWS * COLS)]


def test_batches_do_not_allocate(shuffled):
    with ShuffledStream(shuffled, 500) as stream:
        batches = stream.iter_epoch(0)
        next(batches)  # warm-up: the reader thread and its two buffers exist now
        tracemalloc.start()
        try:
            count = sum(1 for _ in batches)
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert count == 9
    # One batch of x is 500 KiB; what remains is queue items and views (a few hundred bytes).
    assert peak < 20_000, (current, peak)


def test_corrupt_body_is_caught_by_the_checksum_naming_the_epoch(shuffled, tmp_path):
    data = bytearray(shuffled.read_bytes())
    data[-1000] ^= 0x40  # inside epoch 2
    (tmp_path / "bad.bin").write_bytes(bytes(data))
    with ShuffledStream(tmp_path / "bad.bin", 100) as stream:
        assert sum(len(y) for _, y in stream.iter_epoch(0)) == N
        with pytest.raises(ShuffledFileError, match="checksum mismatch in epoch 2"):
            list(stream.iter_epoch(2))


@pytest.mark.parametrize("mutate,word", [
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"x", "trailing"),
    (lambda b: b"NOTSHUF\0" + b[8:], "not a fastnn shuffled file"),
    (lambda b: b[:8] + (2).to_bytes(4, "little") + b[12:], "version 2"),
    (lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:], "header checksum"),  # the seed
    (lambda b: b[:24] + (10**9).to_bytes(8, "little") + b[32:], "truncated"),  # claims too many
    (lambda b: b[:24] + (10**12).to_bytes(8, "little") + b[32:], "implausible"),
    (lambda b: b[:30], "truncated"),
])
def test_bad_headers_are_refused_before_reading(shuffled, tmp_path, mutate, word):
    (tmp_path / "h.bin").write_bytes(mutate(shuffled.read_bytes()))
    with pytest.raises(ShuffledFileError, match=word) as info:
        ShuffledStream(tmp_path / "h.bin", 10)
    assert "h.bin" in str(info.value)


def test_bad_arguments(shuffled):
    for kwargs, word in [(dict(batch_size=0), "batch_size"), (dict(start=3 * N + 1), "start"),
                         (dict(layout="nhwc"), "layout"), (dict(shard=(3, 3)), "shard"),
                         (dict(shard=3), "shard")]:
        kwargs = dict(dict(batch_size=10), **kwargs)
        with pytest.raises(ValueError, match=word):
            ShuffledStream(shuffled, **kwargs)
    with ShuffledStream(shuffled, 10, start=N + 5) as stream:
        with pytest.raises(ValueError, match="before the stream position"):
            stream.iter_epoch(0)


def test_stopping_early_stops_the_reader_thread(shuffled):
    with ShuffledStream(shuffled, 100) as stream:
        for _ in stream.iter_epoch(0):
            break
    assert stream_threads() == []
    stream = ShuffledStream(shuffled, 100)   # abandoned mid-epoch, never closed
    batches = stream.iter_epoch(1)
    next(batches)
    del stream, batches
    gc.collect()
    assert stream_threads() == []
    stream = ShuffledStream(shuffled, 100)   # closed while an iterator is suspended
    batches = stream.iter_epoch(0)
    next(batches)
    stream.close()
    assert stream_threads() == []
    with pytest.raises(ValueError, match="closed"):
        next(batches)


def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_streaming_many_epochs_keeps_rss_flat(tmp_path):
    images, labels = make_source(tmp_path, 20000)
    write_shuffled(images, labels, tmp_path / "m.bin", epochs=8, seed=0)
    with ShuffledStream(tmp_path / "m.bin", 100) as stream:
        after = []
        for epoch in stream.remaining_epochs():
            for x, y in stream.iter_epoch(epoch):
                pass
            after.append(rss_mb())
    assert max(after[1:]) - after[0] < 4, after  # 8 epochs are 41 MB of records


def test_idx_batches_streams_an_idx_pair(tmp_path):
    images, labels = make_source(tmp_path, 250)
    batches = IdxBatches(images, labels, batch_size=100, layout="nchw")
    got = [(indices(x), y.copy()) for x, y in batches]
    assert [len(g[0]) for g in got] == [100, 100, 50]
    np.testing.assert_array_equal(np.concatenate([g[0] for g in got]), np.arange(250))
    np.testing.assert_array_equal(np.concatenate([g[1] for g in got]), np.arange(250) % 10)
    assert len(list(batches)) == 3  # iterable again
    with pytest.raises(ValueError, match="label at record 3"):
        list(IdxBatches(images, labels, batch_size=100, num_classes=3))


def test_idx_batches_on_the_real_test_set():
    from support import mnist_dir
    from fastnn.data import mnist_files, read_labeled
    files = mnist_files(mnist_dir())
    images, labels = read_labeled(files["test_images"], files["test_labels"])
    at = 0
    for x, y in IdxBatches(files["test_images"], files["test_labels"], batch_size=3000):
        np.testing.assert_array_equal(y, labels[at:at + len(y)])
        np.testing.assert_allclose(x, images[at:at + len(y)].reshape(len(y), -1) / np.float32(255), rtol=1e-6)
        at += len(y)
    assert at == 10000
