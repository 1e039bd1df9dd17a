"""Streaming readers with fixed buffers: memory stays flat whatever the data size.

ShuffledStream(path, batch_size, start=0, shard=(0, 1), layout="flat", drop_last=False)
reads a file written by `write_shuffled` (format: shuffled_format.py):

    with ShuffledStream("train.shuf", 100) as stream:
        for epoch in stream.remaining_epochs():      # range of file epochs from the position
            for x, y in stream.iter_epoch(epoch):    # this shard's batches of that epoch
                ...                                  # x float32 in [0, 1], y int64
            saved = stream.position_index            # resume later with start=saved

    iter(stream) chains iter_epoch over remaining_epochs() (one flat sequence of batches).

Facts: epochs, records_per_epoch, batches_per_epoch (of this shard, after drop_last),
batch_size, shard (rank, world), shard_records, lo/hi (this shard's records [lo, hi) of every
epoch), layout (the file's Layout: rows, cols, seed, ...), x/y (the batch buffers).
Position: `position_index` is the global index (epoch * records_per_epoch + record) of the next
record to be yielded; `position` is the same as (epoch, record). `start=` (or assigning
position_index between epochs' iterators) resumes at exactly that record; iter_epoch(epoch)
starts there when the position lies in `epoch`, and refuses an epoch before it.
x is (batch, rows*cols) for layout="flat" and (batch, 1, rows, cols) for "nchw"; y is (batch,).
shard=(rank, world): each epoch is cut into `world` contiguous, disjoint slices that together
cover it (sizes differ by at most one record); rank reads slice `rank` of every epoch.

x and y are the SAME arrays every batch (a last short batch is a view of their first rows):
use a batch before asking for the next one, or copy it. Nothing is allocated per batch.

A background thread reads whole checksum blocks (2048 records) with os.preadv into two
alternating buffers (double buffering; preadv and crc32 release the GIL, so the model computes
while the next block loads), checks each block's crc32 (ShuffledFileError naming the epoch,
records and bytes on mismatch: every byte handed out is verified), and drops the pages it has
read from the page cache (POSIX_FADV_DONTNEED), so the cache does not grow either. Starting an
epoch's iterator stops the previous one's thread; close() (or the `with` block, or garbage
collection) stops it too, also when the consumer stopped early. Not thread-safe: one consumer.

IdxBatches(images_path, labels_path, batch_size=1000, layout="flat", num_classes=10) streams
an IDX pair (e.g. the test set) in fixed buffers the same way, for evaluation; iterate it as
often as you like (each pass reopens the files and reads them in order).
"""
import numbers
import os
import stat
import queue
import threading
import zlib

import numpy as np

from .idx import IdxReader, read_labeled  # noqa: F401  (read_labeled re-exported for callers)
from .shuffled_format import ShuffledFileError, read_header

LAYOUTS = ("flat", "nchw")
_SCALE = np.float32(1 / 255)
_FADVISE = hasattr(os, "posix_fadvise")


def _scale_into(out, pixels):
    """out[...] = pixels / 255 in float32 without allocating: a cast copy, then an in-place
    multiply (np.multiply(uint8, float32, out=) would allocate a cast buffer on every call)."""
    np.copyto(out, pixels, casting="unsafe")
    np.multiply(out, _SCALE, out=out)


def _check_layout(layout):
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


def _batch_buffers(batch_size, rows, cols, layout):
    shape = (batch_size, rows * cols) if layout == "flat" else (batch_size, 1, rows, cols)
    return np.empty(shape, np.float32), np.empty(batch_size, np.int64)


class ShuffledStream:
    """Batches from a pre-shuffled multi-epoch file (see module docstring)."""

    _fd = None
    _reader = None

    def __init__(self, path, batch_size, start=0, shard=(0, 1), layout="flat", drop_last=False):
        self.path = os.fspath(path)
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"ShuffledStream: batch_size must be an int >= 1, got {batch_size!r}")
        rank, world = shard if isinstance(shard, (tuple, list)) and len(shard) == 2 else (None, None)
        if not (isinstance(rank, numbers.Integral) and isinstance(world, numbers.Integral) and 0 <= rank < world):
            raise ValueError(f"ShuffledStream: shard must be (rank, world) with 0 <= rank < world, got {shard!r}")
        self.layout_name = _check_layout(layout)
        batch_size, rank, world = int(batch_size), int(rank), int(world)
        self.batch_size, self.drop_last, self.shard = batch_size, drop_last, (rank, world)
        self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block us
        try:
            if not stat.S_ISREG(os.fstat(self._fd).st_mode):
                raise ShuffledFileError(f"{self.path}: not a regular file (a folder, FIFO or device); "
                                        f"give a file written by `fastnn shuffle`")
            with open(self._fd, "rb", closefd=False) as f:
                self.layout, self.checksums = read_header(f, self.path, os.fstat(self._fd).st_size)
        except BaseException:
            self.close()
            raise
        n = self.layout.records_per_epoch
        self.lo, self.hi = n * rank // world, n * (rank + 1) // world
        if self.hi <= self.lo:
            self.close()
            raise ValueError(f"ShuffledStream: shard {shard} of {n} records is empty")
        total = self.layout.epochs * n
        if isinstance(start, bool) or not isinstance(start, numbers.Integral) or not 0 <= start <= total:
            self.close()
            raise ValueError(f"ShuffledStream: start must be a record index in [0, {total}], got {start!r}")
        self.epochs, self.records_per_epoch = self.layout.epochs, n
        self.position_index = int(start)
        self.x, self.y = _batch_buffers(batch_size, self.layout.rows, self.layout.cols, layout)
        self._raw = np.empty((batch_size, self.layout.record_bytes), np.uint8)
        # Allocated once: fresh 1.6 MB blocks every epoch fragment the heap (measured +2.8 MB
        # RSS by epoch 4 of the 16-epoch MLP run).
        self._blocks = [np.empty((self.layout.block_records, self.layout.record_bytes), np.uint8)
                        for _ in range(2)]

    # -- facts ----------------------------------------------------------------------------------
    @property
    def shard_records(self):
        """Records per epoch in this stream's shard."""
        return self.hi - self.lo

    @property
    def batches_per_epoch(self):
        """Batches each epoch yields (the last may be short unless drop_last)."""
        full, rest = divmod(self.shard_records, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    @property
    def position(self):
        """(epoch, record within the epoch) of the next record this stream will yield."""
        return divmod(self.position_index, self.records_per_epoch)

    def seek(self, position_index):
        """Continue from `position_index` (a saved position_index): the next record read."""
        total = self.epochs * self.records_per_epoch
        if isinstance(position_index, bool) or not isinstance(position_index, numbers.Integral) \
                or not 0 <= position_index <= total:
            raise ValueError(f"ShuffledStream.seek: position must be a record index in [0, {total}], "
                             f"got {position_index!r}")
        self.position_index = int(position_index)

    def _after(self, epoch):
        """The position once this shard of `epoch` is done: the shard's start in the next epoch."""
        if epoch + 1 < self.epochs:
            return (epoch + 1) * self.records_per_epoch + self.lo
        return self.epochs * self.records_per_epoch

    def remaining_epochs(self):
        """Epoch indices from the current position to the end of the file."""
        first, record = self.position
        if first < self.epochs and record >= self.hi:
            first += 1
        return range(first, self.epochs)

    # -- reading --------------------------------------------------------------------------------
    def iter_epoch(self, epoch):
        """Batches (x, y) of this shard of `epoch`, from the resume point when it is in it."""
        if not 0 <= epoch < self.epochs:
            raise ValueError(f"iter_epoch: epoch must be in [0, {self.epochs}), got {epoch}")
        cur_epoch, cur_record = self.position
        begin = self.lo
        if epoch == cur_epoch:
            begin = min(max(cur_record, self.lo), self.hi)
        elif epoch < cur_epoch:
            raise ValueError(f"iter_epoch: epoch {epoch} is before the stream position {self.position}")
        return self._batches(epoch, begin, self.hi)

    def __iter__(self):
        for epoch in self.remaining_epochs():
            yield from self.iter_epoch(epoch)

    def _batches(self, epoch, begin, end):
        raw, fill, bs = self._raw, 0, self.batch_size
        base = epoch * self.records_per_epoch
        self._stop_reader()  # one reader at a time: a new epoch abandons the previous one
        if begin >= end:     # resumed after this shard's last record of the epoch
            self.position_index = self._after(epoch)
            return
        blocks = self._reader = _BlockReader(self._fd, self.path, self.layout,
                                             self.checksums[epoch], epoch, begin, end, self._blocks)
        try:
            for first, block in blocks:
                at = max(begin - first, 0)
                stop = min(end - first, len(block))
                while at < stop:
                    take = min(bs - fill, stop - at)
                    if take == bs:  # the whole batch lies in this block: convert it from there
                        self.position_index = base + first + at + take
                        yield self._convert(block[at:at + take])
                    else:           # it straddles blocks: gather it in the raw buffer first
                        raw[fill:fill + take] = block[at:at + take]
                        fill += take
                        if fill == bs:
                            self.position_index = base + first + at + take
                            yield self._convert(raw)
                            fill = 0
                    at += take
                    if blocks.stop.is_set():  # closed, or another epoch's iterator took over
                        raise ValueError("ShuffledStream: this iterator's stream was closed "
                                         "or moved to another epoch")
            if fill and not self.drop_last:
                self.position_index = base + end
                yield self._convert(raw[:fill])
            self.position_index = self._after(epoch)
        finally:
            blocks.close()
            if self._reader is blocks:
                self._reader = None

    def _convert(self, records):
        """uint8 records -> (x, y) views of the fixed buffers; no allocation (tracemalloc-tested)."""
        count, pixels = len(records), self.layout.pixels
        x, y = self.x[:count], self.y[:count]
        _scale_into(x.reshape(count, pixels), records[:, :pixels])
        label = records[:, pixels:pixels + self.layout.label_bytes]
        np.copyto(y, label[:, 0] if self.layout.label_bytes == 1 else
                  label.view(f"<u{self.layout.label_bytes}")[:, 0], casting="unsafe")
        return x, y

    def _stop_reader(self):
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def close(self):
        """Stop the reader thread and close the file (also at the end of a `with`)."""
        """Stop the background reader (waits for it) and close the file. Idempotent."""
        self._stop_reader()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


class _BlockReader:
    """Background reads of whole checksum blocks covering records [begin, end) of one epoch,
    into two alternating buffers; iterating yields (first record, block view). Each block's
    crc32 is checked before it is handed over: together the blocks cover every byte the
    consumer gets, so the table's whole-epoch crc (for tools) is not computed a second time."""

    def __init__(self, fd, path, layout, checksums, epoch, begin, end, buffers):
        self.fd, self.path, self.layout, self.checksums, self.epoch = fd, path, layout, checksums, epoch
        br = layout.block_records
        self.first_block, self.last_block = begin // br, (end - 1) // br
        self.free, self.ready = queue.Queue(), queue.Queue()
        for buffer in buffers:  # the stream's own two, reused every epoch: RSS stays flat
            self.free.put(buffer)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fastnn-stream", daemon=True)
        self.thread.start()
        self._held = None

    def _run(self):
        lay, br = self.layout, self.layout.block_records
        try:
            for block in range(self.first_block, self.last_block + 1):
                buf = self.free.get()
                if self.stop.is_set():
                    return
                first = block * br
                count = min(br, lay.records_per_epoch - first)
                view = memoryview(buf[:count]).cast("B")
                offset = lay.record_offset(self.epoch, first)
                got = os.preadv(self.fd, [view], offset)  # releases the GIL
                if got != len(view):
                    raise ShuffledFileError(f"{self.path}: short read at byte {offset + got}")
                if zlib.crc32(view) != self.checksums[block]:  # releases the GIL too
                    raise ShuffledFileError(f"{self.path}: checksum mismatch in epoch {self.epoch}, "
                                            f"records {first}-{first + count - 1} (bytes {offset}-"
                                            f"{offset + len(view) - 1})")
                if _FADVISE:  # copied out: drop the pages so the page cache stays flat
                    os.posix_fadvise(self.fd, offset, len(view), os.POSIX_FADV_DONTNEED)
                self.ready.put((first, buf[:count]))
            self.ready.put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            self.ready.put(exc)

    def __iter__(self):
        while True:
            if self.stop.is_set():
                raise ValueError("ShuffledStream: iterating a closed stream")
            item = self.ready.get()
            if self._held is not None:
                self.free.put(self._held)
                self._held = None
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            self._held = item[1].base
            yield item

    def close(self):
        """Stop the reader thread (also when the consumer stopped early) and wait for it."""
        if self.stop.is_set():
            return
        self.stop.set()
        for _ in range(2):
            self.free.put(np.empty((0, 0), np.uint8))  # wake a reader blocked on free.get()
        self.thread.join()
        self.ready.put(ValueError("ShuffledStream: iterating a closed stream"))


class IdxBatches:
    """(x float32 in [0, 1], y int64) batches of an IDX image/label pair in fixed buffers.
    Iterate as often as you like; labels are checked against `num_classes` as they stream."""

    def __init__(self, images_path, labels_path, batch_size=1000, layout="flat", num_classes=10):
        self.images_path, self.labels_path = os.fspath(images_path), os.fspath(labels_path)
        self.batch_size, self.layout_name = batch_size, _check_layout(layout)
        self.num_classes = num_classes
        with IdxReader(self.images_path) as images, IdxReader(self.labels_path) as labels:
            if len(images.shape) != 3 or images.file_dtype != np.uint8:
                raise ValueError(f"{self.images_path}: expected uint8 images (N, rows, cols), got {images.shape}")
            if len(labels) != len(images):
                raise ValueError(f"{self.labels_path}: {len(labels)} labels for {len(images)} images")
            self.count, self.rows, self.cols = images.shape
        self.x, self.y = _batch_buffers(batch_size, self.rows, self.cols, layout)
        self._pixels = np.empty((batch_size, self.rows, self.cols), np.uint8)
        self._labels = np.empty(batch_size, np.uint8)

    def __len__(self):
        return self.count

    def __iter__(self):
        with IdxReader(self.images_path) as images, IdxReader(self.labels_path) as labels:
            for start in range(0, self.count, self.batch_size):
                n = min(self.batch_size, self.count - start)
                images.read(start, n, out=self._pixels[:n])
                labels.read(start, n, out=self._labels[:n])
                if self._labels[:n].max() >= self.num_classes:
                    bad = start + int(np.argmax(self._labels[:n] >= self.num_classes))
                    raise ValueError(f"{self.labels_path}: label at record {bad} (byte {8 + bad}) "
                                     f"is outside [0, {self.num_classes})")
                x, y = self.x[:n], self.y[:n]
                _scale_into(x.reshape(n, -1), self._pixels[:n].reshape(n, -1))
                np.copyto(y, self._labels[:n])
                yield x, y
