"""External shuffle: write `epochs` independent permutations of an IDX training set into one
file (format: shuffled_format.py), with memory bounded by `memory_limit` whatever the data size.

API (what `fastnn shuffle` calls)::

    write_shuffled(images_path, labels_path, out_path, epochs, seed=0,
                   memory_limit=64 * 2**20, temp_dir=None) -> Layout

How, per epoch: every record draws an i.i.d. uniform 64-bit key from a generator seeded with
(seed, epoch). The top bits of the key pick one of B buckets (B a power of two, so buckets are
key *ranges*); records and their keys are appended to that bucket's temporary files in chunks.
Then each bucket in turn (about a quarter of the limit) is loaded, sorted by key and appended.

Why the result is a uniform random permutation: buckets are consecutive key ranges, so the
output is the records sorted by their keys. Sorting on i.i.d. uniform keys gives every order
with equal probability (the keys are exchangeable). Equal keys are broken by source order; the
chance of any tie is below N^2 / 2^65 (1e-10 for MNIST), the only departure from uniform.
Because the order is "sort by key" and the keys depend only on (seed, epoch, record index),
the output bytes depend on the seed alone: not on memory_limit, temp_dir or the machine.

Atomic: the output is written to a temp file in a private folder beside out_path, fsynced and
renamed; a killed or failed run leaves no file at out_path. Bucket files live in that folder
(or one in temp_dir). Both are removed on success or error; a SIGKILL leaves them behind as
".fastnn-shuffle-<pid>-*", and the next write_shuffled into that folder removes them. It
removes only folders whose lock is free: each run holds an exclusive flock on the "lock" file
inside its folders for the whole shuffle, and the kernel drops it when the process dies. PIDs
prove nothing across containers sharing a volume (another PID namespace), a lock does.

out_path must not be (or resolve to, through links) images_path or labels_path: ValueError.
"""
import contextlib
import fcntl
import numbers
import os
import re
import resource
import shutil
import tempfile
import zlib

import numpy as np

from ..atomic import refuse_overwriting_inputs
from .idx import IdxError, IdxReader
from .shuffled_format import MAX_EPOCHS, Layout

_WORK_PREFIX = ".fastnn-shuffle-"
_CLAIM_PREFIX = ".fastnn-shuffle-claim-"  # a folder before its lock is taken: never swept
_LOCK = "lock"
_MIN_CHUNK = 64          # records per source chunk at the smallest memory limit


def write_shuffled(images_path, labels_path, out_path, epochs, seed=0, memory_limit=64 * 2**20,
                   temp_dir=None):
    """Write `epochs` shuffled copies of (images, labels) to `out_path`, atomically.

    images: IDX uint8 (N, rows, cols); labels: IDX uint8 (N,), raw or gzip. Peak memory stays
    under `memory_limit` bytes beyond the interpreter. Temporary files (the output, plus the
    bucket files of the epochs written in one pass over the source: up to `epochs` times the
    data) go beside out_path (buckets in `temp_dir` when given) and are removed. Returns the written Layout. Bad arguments raise
    ValueError naming the argument; malformed inputs raise IdxError (a ValueError).
    """
    if not _is_int(epochs) or not 1 <= epochs <= MAX_EPOCHS:
        raise ValueError(f"write_shuffled: epochs must be an int in [1, {MAX_EPOCHS}], got {epochs!r}")
    if not _is_int(seed) or not 0 <= seed < 2**63:
        raise ValueError(f"write_shuffled: seed must be an int in [0, 2**63), got {seed!r}")
    if not _is_int(memory_limit):
        raise ValueError(f"write_shuffled: memory_limit must be an int (bytes), got {memory_limit!r}")
    epochs, seed, memory_limit = int(epochs), int(seed), int(memory_limit)
    refuse_overwriting_inputs("write_shuffled", "out_path", out_path, images_path=images_path,
                              labels_path=labels_path)
    with _open_source(images_path, "images_path") as images, \
            _open_source(labels_path, "labels_path") as labels:
        if images.file_dtype != np.uint8 or len(images.shape) != 3:
            raise IdxError(f"{images_path}: expected uint8 images (N, rows, cols), got "
                           f"{images.file_dtype} {images.shape} (header at byte 0)")
        if labels.file_dtype != np.uint8 or len(labels.shape) != 1 or len(labels) != len(images):
            raise IdxError(f"{labels_path}: expected {len(images)} uint8 labels to match "
                           f"{images_path}, got {labels.file_dtype} {labels.shape} (header at byte 0)")
        if len(images) == 0:
            raise ValueError(f"write_shuffled: images_path {images_path} holds no records")
        layout = Layout(images.shape[1], images.shape[2], 1, len(images), epochs, seed)
        plan = _Plan(layout, memory_limit)
        out_path = os.path.abspath(out_path)
        out_dir = os.path.dirname(out_path)
        scratch = out_dir if temp_dir is None else os.fspath(temp_dir)
        for name, folder in (("out_path", out_dir), ("temp_dir", scratch)):
            if not os.path.isdir(folder):
                raise ValueError(f"write_shuffled: {name} folder {folder!r} does not exist")
            _sweep_stale(folder)
        # The output's temp file lives in a private folder beside out_path (a rename never
        # crosses filesystems), so a killed run leaves one folder that the next run removes.
        with contextlib.ExitStack() as held:
            work = held.enter_context(_work_folder(out_dir))
            buckets = work if temp_dir is None else held.enter_context(_work_folder(scratch))
            tmp = os.path.join(work, "out.tmp")
            with open(tmp, "wb") as out:
                out.seek(layout.data_offset)
                table = np.zeros((epochs, layout.blocks_per_epoch + 1), np.uint32)
                for first in range(0, epochs, plan.epochs_per_pass):
                    group = range(first, min(first + plan.epochs_per_pass, epochs))
                    _scatter(images, labels, layout, plan, group, buckets)
                    for epoch in group:
                        table[epoch] = _gather(out, layout, plan, epoch, buckets)
                out.seek(0)
                out.write(layout.header_bytes(table))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, out_path)
            _fsync_dir(out_dir)
    return layout


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@contextlib.contextmanager
def _work_folder(parent):
    """A private folder in `parent`, locked (see the module docstring) until it is removed.
    It is made under a claim name and renamed once locked, so a sweep never sees it unlocked."""
    claim = tempfile.mkdtemp(prefix=f"{_CLAIM_PREFIX}{os.getpid()}-", dir=parent)
    lock = os.open(os.path.join(claim, _LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        folder = os.path.join(parent, _WORK_PREFIX + os.path.basename(claim)[len(_CLAIM_PREFIX):])
        os.rename(claim, folder)
        claim = folder
        yield folder
    finally:
        shutil.rmtree(claim, ignore_errors=True)  # removed while still locked
        os.close(lock)


def _sweep_stale(folder):
    """Remove work folders left by shuffles that were killed: those whose lock is free."""
    for name in os.listdir(folder):
        if re.fullmatch(re.escape(_WORK_PREFIX) + r"\d+-\w+", name):
            _remove_if_unlocked(os.path.join(folder, name))


def _remove_if_unlocked(work):
    """Remove `work` when no process holds its lock (a folder without a lock file is not
    proven stale and stays)."""
    try:
        lock = os.open(os.path.join(work, _LOCK), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # a live shuffle
    else:
        shutil.rmtree(work, ignore_errors=True)
    finally:
        os.close(lock)


def _fsync_dir(folder):
    """Make the rename durable (as fastnn.atomic does; that helper keeps its temp file beside
    the target, where a SIGKILL would strand it unnoticed)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_source(path, name):
    try:
        return IdxReader(path)
    except OSError as exc:  # IdxError already names the file; a missing file gets the argument
        raise ValueError(f"write_shuffled: cannot read {name} {os.fspath(path)!r}: "
                         f"{exc.strerror or exc}") from None


class _Plan:
    """Sizes derived from the memory limit. Budget: a source chunk (raw pixels, two record
    copies, keys, bucket ids, order: 3 * record + 40 bytes each) takes at most a quarter; a
    bucket (records, keys, sort order) has a mean of at most a quarter, so the largest of
    them stays under half; the output piece is a sixteenth."""

    def __init__(self, layout, limit):
        per_record = 3 * layout.record_bytes + 48
        minimum = 4 * _MIN_CHUNK * per_record
        if limit < minimum:
            raise ValueError(f"write_shuffled: memory_limit {limit} is too small for "
                             f"{layout.record_bytes}-byte records: needs at least {minimum}")
        n = layout.records_per_epoch
        self.chunk = max(1, min(n, limit // 4 // per_record))
        need = -(-n * (layout.record_bytes + 16) // (limit // 4))
        self.bucket_bits = max(0, (need - 1).bit_length())
        self.buckets = 1 << self.bucket_bits
        self.piece = max(1, min(n, limit // 16 // layout.record_bytes))
        # Two files per bucket per epoch of a pass; stay well inside the open-file limit.
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        cap = min(1024, (soft if soft != resource.RLIM_INFINITY else 4096) // 2)
        if 2 * self.buckets > cap:
            raise ValueError(f"write_shuffled: memory_limit {limit} is too small for "
                             f"{n} records: {self.buckets} buckets would exceed the open-file limit")
        self.epochs_per_pass = max(1, cap // (2 * self.buckets))


def _bucket_paths(work, epoch, bucket):
    stem = os.path.join(work, f"e{epoch}-b{bucket}")
    return stem + ".rec", stem + ".key"


def _write_all(fd, array):
    view = memoryview(array).cast("B")
    while view:
        view = view[os.write(fd, view):]


def _scatter(images, labels, layout, plan, epochs, work):
    """One pass over the source: each record (and its key) goes to one bucket per epoch.
    Buffers are allocated once; the per-chunk key arrays are within the chunk budget."""
    gens = {e: np.random.PCG64([layout.seed, e]) for e in epochs}
    fds = {}
    shift = np.uint64(64 - plan.bucket_bits)
    chunk, rb, pixels = plan.chunk, layout.record_bytes, layout.pixels
    raw = np.empty((chunk, layout.rows, layout.cols), np.uint8)
    lab = np.empty(chunk, np.uint8)
    records = np.empty((chunk, rb), np.uint8)
    grouped = np.empty_like(records)
    def fd(path):  # opened on first use: empty buckets get no files (creating one is slow)
        if path not in fds:
            fds[path] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        return fds[path]

    try:
        for start in range(0, len(images), chunk):
            count = min(chunk, len(images) - start)
            block, out = records[:count], grouped[:count]
            block[:, :pixels] = images.read(start, count, out=raw[:count]).reshape(count, pixels)
            block[:, pixels] = labels.read(start, count, out=lab[:count])
            for e in epochs:
                # random_raw: the key stream does not depend on how it is split into chunks.
                keys = gens[e].random_raw(count)
                if plan.bucket_bits:
                    which = (keys >> shift).astype(np.intp)
                    order = np.argsort(which, kind="stable")
                    bounds = np.concatenate(([0], np.cumsum(np.bincount(which, minlength=plan.buckets))))
                    np.take(block, order, axis=0, out=out)
                    keys = keys[order]
                else:
                    out, bounds = block, (0, count)
                for b in range(plan.buckets):
                    lo, hi = bounds[b], bounds[b + 1]
                    if hi > lo:
                        rec_path, key_path = _bucket_paths(work, e, b)
                        _write_all(fd(rec_path), out[lo:hi])
                        _write_all(fd(key_path), keys[lo:hi])
    finally:
        for fd in fds.values():
            os.close(fd)


class _Checksums:
    """crc32 of each `block_records` block of an epoch, and of the whole epoch, fed in pieces."""

    def __init__(self, layout):
        self.block_bytes = layout.block_records * layout.record_bytes
        self.row = np.zeros(layout.blocks_per_epoch + 1, np.uint32)
        self.index, self.fill, self.block, self.epoch = 0, 0, 0, 0

    def feed(self, view):
        self.epoch = zlib.crc32(view, self.epoch)
        at = 0
        while at < len(view):  # blocks run across piece and bucket boundaries
            take = min(self.block_bytes - self.fill, len(view) - at)
            self.block = zlib.crc32(view[at:at + take], self.block)
            self.fill, at = self.fill + take, at + take
            if self.fill == self.block_bytes:
                self.row[self.index] = self.block
                self.index, self.fill, self.block = self.index + 1, 0, 0

    def finish(self):
        if self.fill:
            self.row[self.index] = self.block
        self.row[-1] = self.epoch
        return self.row


def _gather(out, layout, plan, epoch, work):
    """Sort each bucket of `epoch` by key and append it; returns the epoch's checksum row."""
    sums = _Checksums(layout)
    piece = np.empty((plan.piece, layout.record_bytes), np.uint8)
    for b in range(plan.buckets):
        rec_path, key_path = _bucket_paths(work, epoch, b)
        if not os.path.exists(rec_path):  # an empty bucket
            continue
        data = np.fromfile(rec_path, np.uint8).reshape(-1, layout.record_bytes)
        order = np.argsort(np.fromfile(key_path, "<u8"), kind="stable")  # stable: ties keep source order
        os.unlink(rec_path)
        os.unlink(key_path)
        for at in range(0, len(data), plan.piece):
            idx = order[at:at + plan.piece]
            view = memoryview(np.take(data, idx, axis=0, out=piece[:len(idx)])).cast("B")
            out.write(view)
            sums.feed(view)
        del data, order
    return sums.finish()
