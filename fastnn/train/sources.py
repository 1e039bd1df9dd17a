"""Where a run's batches come from: in-memory arrays (reshuffled each epoch) or a pre-shuffled
stream file. Each source's position is part of the run's state (`state()` / `restore()`)."""
import numpy as np

from ..errors import CheckpointError


def is_stream(x):
    return hasattr(x, "iter_epoch") and hasattr(x, "records_per_epoch")


class ArraySource:
    """Epochs of in-memory arrays: each epoch reshuffles the previous permutation with one
    np.random.default_rng(seed) (as fit always has), so state = RNG state + permutation.
    `gather(x, y, batch_size, order)` yields the batches (the model's staging buffers).
    shard=(rank, world): this rank takes slice `rank` of `world` contiguous, disjoint slices of
    every epoch's order (as ShuffledStream's shards; every rank must use the same seed)."""

    kind = "arrays"

    def __init__(self, gather, x, y, batch_size, shuffle, seed, shard=(0, 1)):
        self.gather, self.x, self.y, self.batch_size, self.shuffle = gather, x, y, batch_size, shuffle
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(x.shape[0]) if shuffle else None
        rank, world = shard
        self.lo, self.hi = x.shape[0] * rank // world, x.shape[0] * (rank + 1) // world
        self.steps_per_epoch = -(-(self.hi - self.lo) // batch_size)

    def batches_from(self, first):
        """The current epoch's batches from batch `first` on (skipped ones are not gathered)."""
        if self.order is not None:
            return self.gather(self.x, self.y, self.batch_size, self.order[self.lo:self.hi], first)
        y = None if self.y is None else self.y[self.lo:self.hi]
        return self.gather(self.x[self.lo:self.hi], y, self.batch_size, None, first)

    def rows(self):
        """(x, y, order) of the current epoch for a compiled multi-step run: batch j is rows
        order[j*B:(j+1)*B] of x and y (order None: rows j*B:(j+1)*B)."""
        if self.order is not None:
            return self.x, self.y, self.order[self.lo:self.hi]
        return self.x[self.lo:self.hi], None if self.y is None else self.y[self.lo:self.hi], None

    def full_batches(self):
        """Batches of exactly batch_size in an epoch (the last one may be short)."""
        return (self.hi - self.lo) // self.batch_size

    def next_epoch(self):
        if self.shuffle:
            self.rng.shuffle(self.order)
        return self.batches_from(0)

    def continue_epoch(self, done):
        return self.batches_from(done)

    def state(self):
        state = {"samples": int(self.x.shape[0]), "rng": self.rng.bit_generator.state}
        return state, ({} if self.order is None else {"order": self.order.copy()})

    def restore(self, state, arrays):
        if state["samples"] != self.x.shape[0]:
            raise CheckpointError(f"resume: the checkpoint was taken on {state['samples']} samples, "
                                  f"x has {self.x.shape[0]}")
        self.rng.bit_generator.state = state["rng"]
        if self.shuffle:
            order = arrays.get("order")
            if order is None or order.shape != self.order.shape or \
                    not np.array_equal(np.sort(order), np.arange(len(order))):
                raise CheckpointError("resume: the checkpoint's permutation is missing or not a permutation")
            self.order[...] = order


class StreamSource:
    """Epochs of a ShuffledStream, following the file from the stream's position; state = the
    file epoch being read and stream.position_index."""

    kind = "stream"

    def __init__(self, stream):
        self.stream = stream
        self.batch_size, self.steps_per_epoch = stream.batch_size, stream.batches_per_epoch
        remaining = stream.remaining_epochs()
        self.file_epoch = remaining.start - 1  # the epoch being read; next_epoch moves on

    def next_epoch(self):
        if self.file_epoch + 1 >= self.stream.epochs:
            return None
        self.file_epoch += 1
        return self.stream.iter_epoch(self.file_epoch)

    def continue_epoch(self, done):
        s = self.stream
        if s.position_index >= self.file_epoch * s.records_per_epoch + s.hi:
            return iter(())  # the checkpoint was taken after the epoch's last batch
        return s.iter_epoch(self.file_epoch)

    def state(self):
        s = self.stream
        return {"file_epoch": self.file_epoch, "position_index": int(s.position_index),
                "records_per_epoch": s.records_per_epoch, "epochs": s.epochs,
                "shard": list(s.shard), "path": s.path}, {}

    def restore(self, state, arrays):
        s = self.stream
        for key, have in (("records_per_epoch", s.records_per_epoch), ("epochs", s.epochs),
                          ("shard", list(s.shard))):
            if state[key] != have:
                raise CheckpointError(f"resume: the checkpoint's stream has {key} {state[key]}, "
                                      f"this one has {have}")
        position, epoch = int(state["position_index"]), int(state["file_epoch"])
        if not (0 <= position <= s.epochs * s.records_per_epoch and -1 <= epoch < s.epochs):
            raise CheckpointError(f"resume: stream position {position} / epoch {epoch} is outside the file")
        s.seek(position)
        self.file_epoch = epoch
