"""External shuffle: write N independent permutations of an IDX training set into one file,
with memory bounded by `memory_limit` whatever the data size.

How (per epoch, from one pass over the source): every record gets an independent uniform
random bucket; records are appended to that bucket's temporary file; then each bucket (sized to
fit the memory limit) is loaded, permuted uniformly in memory and appended to the output.
Why the result is a uniform permutation: it is the order obtained by sorting the records on
i.i.d. keys (bucket, uniform rank within the bucket), and sorting on i.i.d. continuous keys gives
every order with equal probability. The output depends on (seed, memory_limit).
"""
import os
import shutil
import tempfile
import zlib

import numpy as np

from ..atomic import atomic_write
from .idx import IdxReader, IdxError
from .shuffled_format import Layout

_MIN_LIMIT = 1 << 20


def write_shuffled(images_path, labels_path, out_path, epochs, seed=0, memory_limit=64 * 2**20,
                   temp_dir=None):
    """Write `epochs` shuffled copies of (images, labels) to `out_path`, atomically.

    images: IDX uint8 (N, rows, cols); labels: IDX uint8 (N,). Peak memory stays under about
    `memory_limit` bytes beyond the interpreter. Temporary bucket files go in `temp_dir`
    (default: beside `out_path`) and are removed. Returns the written Layout.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"write_shuffled: epochs must be an int >= 1, got {epochs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"write_shuffled: seed must be an int, got {seed!r}")
    if memory_limit < _MIN_LIMIT:
        raise ValueError(f"write_shuffled: memory_limit must be >= 1 MiB, got {memory_limit}")
    with IdxReader(images_path) as images, IdxReader(labels_path) as labels:
        if images.file_dtype != np.uint8 or len(images.shape) != 3:
            raise IdxError(f"{images_path}: expected uint8 images (N, rows, cols), got "
                           f"{images.file_dtype} {images.shape}")
        if labels.file_dtype != np.uint8 or len(labels.shape) != 1 or len(labels) != len(images):
            raise IdxError(f"{labels_path}: expected {len(images)} uint8 labels, got "
                           f"{labels.file_dtype} {labels.shape}")
        layout = Layout(images.shape[1], images.shape[2], 1, len(images), epochs, seed)
        folder = temp_dir or os.path.dirname(os.path.abspath(out_path))
        work = tempfile.mkdtemp(prefix=".fastnn-shuffle-", dir=folder)
        try:
            buckets = _bucket_count(layout, memory_limit)
            chunk = max(1, min(len(images), memory_limit // (16 * layout.record_bytes)))
            _scatter(images, labels, layout, buckets, chunk, seed, work)
            with atomic_write(out_path, "wb") as out:
                out.seek(layout.data_offset)
                table = np.zeros((epochs, layout.blocks_per_epoch + 1), np.uint32)
                for epoch in range(epochs):
                    table[epoch] = _gather(out, layout, epoch, buckets, seed, work)
                out.seek(0)
                out.write(layout.header_bytes(table))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return layout


def _bucket_count(layout, memory_limit):
    # A bucket is loaded whole and permuted into a copy; buckets are random in size, so aim
    # for an eighth of the limit each.
    return max(1, -(-layout.epoch_bytes * 8 // memory_limit))


def _bucket_path(work, epoch, bucket):
    return os.path.join(work, f"e{epoch}-b{bucket}.bin")


def _scatter(images, labels, layout, buckets, chunk, seed, work):
    """One pass over the source: each record goes to one bucket file per epoch. Memory: three
    chunk-sized buffers, allocated once."""
    rngs = [np.random.default_rng([seed, epoch]) for epoch in range(layout.epochs)]
    files = {(e, b): open(_bucket_path(work, e, b), "wb")
             for e in range(layout.epochs) for b in range(buckets)}
    pixels = np.empty((chunk, layout.rows, layout.cols), np.uint8)
    records = np.empty((chunk, layout.record_bytes), np.uint8)
    grouped = np.empty_like(records)
    try:
        for start in range(0, len(images), chunk):
            count = min(chunk, len(images) - start)
            block, out = records[:count], grouped[:count]
            block[:, :layout.pixels] = images.read(start, count, out=pixels[:count]).reshape(count, -1)
            block[:, layout.pixels] = labels.read(start, count)
            for epoch, rng in enumerate(rngs):
                which = rng.integers(0, buckets, count)
                order = np.argsort(which, kind="stable")
                bounds = np.searchsorted(which[order], np.arange(buckets + 1))
                np.take(block, order, axis=0, out=out)
                for b in range(buckets):
                    files[(epoch, b)].write(memoryview(out[bounds[b]:bounds[b + 1]]).cast("B"))
    finally:
        for f in files.values():
            f.close()


def _gather(out, layout, epoch, buckets, seed, work):
    """Permute each bucket of `epoch` and append it; returns the epoch's checksum row."""
    rng = np.random.default_rng([seed, epoch, 1])
    crcs = np.zeros(layout.blocks_per_epoch + 1, np.uint32)
    block_bytes = layout.block_records * layout.record_bytes
    block_index, block_fill, block_crc, epoch_crc = 0, 0, 0, 0
    for b in range(buckets):
        path = _bucket_path(work, epoch, b)
        data = np.fromfile(path, np.uint8).reshape(-1, layout.record_bytes)
        os.unlink(path)
        permuted = memoryview(data[rng.permutation(len(data))]).cast("B")
        del data
        out.write(permuted)
        epoch_crc = zlib.crc32(permuted, epoch_crc)
        at = 0
        while at < len(permuted):  # block checksums run across bucket boundaries
            take = min(block_bytes - block_fill, len(permuted) - at)
            block_crc = zlib.crc32(permuted[at:at + take], block_crc)
            block_fill += take
            at += take
            if block_fill == block_bytes:
                crcs[block_index], block_index, block_fill, block_crc = block_crc, block_index + 1, 0, 0
    if block_fill:
        crcs[block_index] = block_crc
    crcs[-1] = epoch_crc
    return crcs
