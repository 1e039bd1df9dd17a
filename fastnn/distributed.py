"""Data-parallel training over MPI: every rank holds the whole model, reads its own part of the
data, and the ranks average their gradients before each optimizer update, so they stay identical.

    # mpiexec -n 2 python train.py          (pip install "fastnn[mpi]": mpi4py + the MPICH runtime)
    from fastnn.distributed import DataParallel
    ranks = DataParallel()                   # rank, world, local_rank, local_world, is_root
    model.fit(x, y, batch_size=100, distributed=ranks)     # 100: the global batch (docs/distributed.md)

fit does all of the below; the primitives, for loops of your own:

    ranks.start(model)                       # rank 0's parameters and optimizer state everywhere
    ...                                      # each step, on every rank:
    total = ranks.agree(loss_sum, n, correct, stop)   # global step statistics, one small Allreduce
    ranks.average_gradients(model.grads, n, total.count)  # one in-place Allreduce of the flat array
    ranks.check_params(model, "epoch 3")     # a checksum compared across ranks

The transport is MPI through mpi4py (imported here lazily: `import fastnn` never loads it), so
what the cluster's MPI does well (shared memory on one machine, the fastest network between
machines, a hostfile launch) comes with it.

Failures never hang the job. Creating a DataParallel installs a sys.excepthook: an uncaught
exception on any rank prints one line (`fastnn: error: rank 1 of 2: ...`) and calls
MPI_Abort, which ends every rank (a plain `python` under mpiexec would leave the others waiting in
a collective forever). A rank killed outright (SIGKILL, out of memory) is noticed by mpiexec,
which ends the others. DistributedError is raised on every rank at the same point, with the
same message, so the job stops cleanly, without MPI_Abort: rank 0 prints the line and every rank
exits with status 1 (refusals: RandomSearch, models that differ, a launcher/library mismatch; and
parameters that stopped being identical).

Results: the sum in the Allreduce is done by the MPI library in its own order (MPICH on one
machine: ((g0 + g1) + (g2 + g3)) for 4 ranks); it is the same on every rank and from run to run
for one MPI, world size and placement, so training is reproducible, and equal to rounding to
one process training on the ranks' batches together.
"""
import os
import sys
import time
import zlib
from typing import NamedTuple

import numpy as np

# How launchers tell a process the size of the job it belongs to: PMI (MPICH's hydra, Intel
# MPI, srun --mpi=pmi2), Open MPI's mpirun, and hydra's count of ranks on this machine. A
# process that sees one of these above 1 but an MPI world of 1 was started by one MPI's
# launcher and loaded another MPI's library.
LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")
LAUNCHER_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK")
# When a rank fails, rank 0 reports at once; another rank waits this long for rank 0 to do so
# (when every rank meets the failure, it is printed once) before it reports and aborts itself.
REPORT_GRACE_SECONDS = 2.0
# How long a failing rank leaves the launcher to forward its last line before MPI_Abort.
FORWARD_SECONDS = 0.3


class DistributedError(RuntimeError):
    """Raised on every rank at the same point with the same message (a refusal, or ranks whose
    parameters differ): the job can end cleanly, with rank 0 reporting it."""


class StepTotals(NamedTuple):
    """One step's statistics summed over the ranks (`correct` None when the loss has no notion
    of correct predictions); `stop` is True when any rank asked to stop; `ending` is how many
    ranks called it to end their epoch (0 for a step: anything else means unequal steps)."""
    loss_sum: float
    count: int
    correct: object
    stop: bool
    ending: int = 0


def mpi():
    """The mpi4py.MPI module (initialises MPI on first use), or ImportError saying what to install."""
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError, OSError) as exc:  # no mpi4py, or mpi4py without libmpi
        raise ImportError(f"fastnn.distributed needs mpi4py and an MPI runtime: pip install "
                          f"'fastnn[mpi]' (mpi4py + the MPICH wheel), or mpi4py built against the "
                          f"cluster's MPI ({type(exc).__name__}: {exc})") from exc
    return MPI


def launcher_world_size():
    """The number of processes the launcher says this job has (from its environment variables,
    without initialising MPI), or None when no MPI launcher started this process."""
    for name in LAUNCHER_SIZE_VARS:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def launcher_rank():
    """This process's rank as the launcher's environment says (0 when there is none)."""
    for name in LAUNCHER_RANK_VARS:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def _check_world(world):
    """Refuse a world of 1 under a launcher that started more processes (library mismatch)."""
    launched = {name: os.environ[name] for name in LAUNCHER_SIZE_VARS if os.environ.get(name, "").isdigit()}
    asked = max((int(v) for v in launched.values()), default=1)
    if world == 1 and asked > 1:
        found = ", ".join(f"{k}={v}" for k, v in launched.items())
        raise DistributedError(
            f"the launcher started {asked} processes ({found}) but MPI sees a world of 1 in each: "
            f"mpiexec and mpi4py's MPI library are from different MPIs (e.g. the cluster's mpirun "
            f"with the mpich wheel); launch with the mpiexec of the MPI that mpi4py loads "
            f"({sys.prefix}/bin/mpiexec for the wheel)")


def _state_arrays(model):
    """The optimizer's state arrays (SGD velocity, Adam m/v), in a fixed order."""
    state = model.optimizer.state_dict()
    return [(k, v) for k, v in sorted(state.items()) if isinstance(v, np.ndarray)]


def _state_scalars(model):
    state = model.optimizer.state_dict()
    return {k: v for k, v in sorted(state.items()) if not isinstance(v, np.ndarray)}


def params_checksum(model):
    """crc32 over the parameters and the optimizer state (arrays and numbers): equal on every
    rank while the ranks train the same model."""
    crc = zlib.crc32(memoryview(model.params).cast("B"))
    for _, array in _state_arrays(model):
        crc = zlib.crc32(memoryview(np.ascontiguousarray(array)).cast("B"), crc)
    return zlib.crc32(repr(_state_scalars(model)).encode(), crc)


class DataParallel:
    """The ranks of one data-parallel job (see the module docstring).

    `DataParallel(comm=None, threads=None, errors="line")`: `comm` defaults to MPI.COMM_WORLD;
    `threads` is the kernel thread count of this rank, by default the machine's cores shared by
    the ranks on it (unless FASTNN_NUM_THREADS is set); `errors` is what an uncaught exception
    prints before the job is aborted: "line" (one line) or "traceback" (Python's traceback, then
    the line).
    """

    def __init__(self, comm=None, threads=None, errors="line"):
        if errors not in ("line", "traceback"):
            raise ValueError(f"DataParallel: errors must be 'line' or 'traceback', got {errors!r}")
        MPI = mpi()
        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.world = self.comm.Get_rank(), self.comm.Get_size()
        self.is_root = self.rank == 0
        _install_abort_hook(self, errors)
        _check_world(self.world)
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED)  # the ranks on this machine
        self.local_rank, self.local_world = local.Get_rank(), local.Get_size()
        local.Free()
        self.threads = self._threads(threads)

    def __repr__(self):
        return f"DataParallel(rank={self.rank}, world={self.world}, local {self.local_rank}/{self.local_world})"

    def _threads(self, threads):
        """Set this rank's kernel threads: `threads`, else FASTNN_NUM_THREADS when set, else the
        machine's cores shared by its ranks (ranks on one machine must not fight for cores)."""
        from ._runtime import get_num_threads, set_num_threads
        if threads is not None:
            set_num_threads(threads)
        elif "FASTNN_NUM_THREADS" not in os.environ:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            set_num_threads(max(1, cores // self.local_world))
        return get_num_threads()

    # -- agreement before training ---------------------------------------------------------------
    def check_all(self, problem):
        """Every rank passes its own problem (a message) or None; when any rank has one, every
        rank raises the same DistributedError naming the first such rank. Collective."""
        problems = self.comm.allgather(problem)
        for rank, message in enumerate(problems):
            if message is not None:
                where = f"rank {rank}: " if self.world > 1 else ""
                raise DistributedError(where + message)

    def start(self, model):
        """Make every rank's model rank 0's: parameters, optimizer state arrays and numbers.
        Refuses (on every rank) optimizers that are not gradient based and models that differ
        in layout. Collective."""
        if model.input_shape is None or model.optimizer is None:
            raise TypeError("DataParallel.start: the model must be built and have an optimizer "
                            "(pass input_shape and optimizer to Sequential)")
        problem = None
        if not model.optimizer.needs_gradients:
            problem = (f"distributed training averages gradients; {type(model.optimizer).__name__} "
                       f"is not gradient based (use SGD or Adam)")
        self.check_all(problem)
        layout = (model.params.size, str(model.dtype), type(model.optimizer).__name__,
                  [(k, v.shape, str(v.dtype)) for k, v in _state_arrays(model)])
        layouts = self.comm.allgather(layout)
        self.check_all(None if layouts[self.rank] == layouts[0] else
                       f"its model differs from rank 0's ({layouts[self.rank]} vs {layouts[0]}: "
                       f"parameters, dtype, optimizer, optimizer state)")
        self.comm.Bcast(model.params, root=0)
        for _, array in _state_arrays(model):
            self.comm.Bcast(array, root=0)
        scalars = self.comm.bcast(_state_scalars(model), root=0)
        if scalars:
            model.optimizer.load_state_dict(scalars)

    # -- each step -----------------------------------------------------------------------------
    def agree(self, loss_sum, count, correct, stop, ending=False):
        """Sum this step's statistics over the ranks in one small Allreduce: the loss summed over
        samples, the sample count, the correct count (or None), and stop (any rank's wish to
        stop: Ctrl-C). Every rank gets the same StepTotals, so every rank takes the same
        decisions (divergence, early stop, interruption) at the same step. `ending`: this rank
        calls it at the end of its epoch (end_epoch), where the others must be too."""
        has_correct = correct is not None
        local = np.array([loss_sum, count, correct if has_correct else 0, bool(stop), has_correct,
                          bool(ending)], np.float64)
        if self.world > 1:
            self.comm.Allreduce(self._MPI.IN_PLACE, local, op=self._MPI.SUM)
        loss_sum, count, correct, stop, with_correct, ending = local
        return StepTotals(float(loss_sum), int(count), int(correct) if with_correct == self.world else None,
                          bool(stop), int(ending))

    def average_gradients(self, grads, batch_n, total_n=None):
        """grads <- sum over ranks of (n_i / N) * g_i, in place, in one Allreduce of the flat
        array: the gradient of the mean loss over all N = sum n_i samples of the step (each rank's
        g_i is the mean over its n_i samples, so a short last batch counts by its size).
        `total_n` is N when known (StepTotals.count); else one more small Allreduce finds it."""
        if type(grads) is not np.ndarray or grads.ndim != 1 or not grads.flags.c_contiguous \
                or grads.dtype not in (np.float32, np.float64):
            raise TypeError(f"average_gradients: grads must be a contiguous 1-D float32/float64 "
                            f"array (the model's flat gradient array), got "
                            f"{type(grads).__name__} {getattr(grads, 'dtype', '')} {getattr(grads, 'shape', '')}")
        if total_n is None:
            total_n = self.comm.allreduce(int(batch_n), op=self._MPI.SUM)
        if not 0 <= batch_n <= total_n or total_n < 1:
            raise ValueError(f"average_gradients: batch_n must be in [0, total_n] and total_n >= 1, "
                             f"got batch_n={batch_n}, total_n={total_n}")
        if batch_n != total_n:  # the weight in the array's dtype, the same as a reference's
            grads *= grads.dtype.type(batch_n / total_n)
        if self.world > 1:
            self.comm.Allreduce(self._MPI.IN_PLACE, grads, op=self._MPI.SUM)

    # -- what fit (fastnn/train/loop.py) asks of a distributed run ----------------------------------
    @property
    def shard(self):
        """(rank, world): this rank's slice of every epoch (ShuffledStream's `shard`)."""
        return self.rank, self.world

    def per_rank_batch(self, who, batch_size):
        """The batch each rank trains on when the global batch is `batch_size`."""
        if batch_size % self.world:
            raise ValueError(f"{who}: batch_size {batch_size} is the global batch, split evenly over "
                             f"the {self.world} ranks; it must be a multiple of {self.world}")
        return batch_size // self.world

    def open_stream(self, path, batch_size, **options):
        """This rank's shard of a pre-shuffled file at global batch `batch_size`
        (fastnn.data.ShuffledStream; `options`: layout, drop_last, start)."""
        from .data import ShuffledStream
        return ShuffledStream(path, self.per_rank_batch("open_stream", batch_size), shard=self.shard, **options)

    def check_shard(self, who, shard):
        if tuple(shard) != self.shard:
            raise ValueError(f"{who}: the stream reads shard {tuple(shard)}, this is rank {self.rank} "
                             f"of {self.world}: open it with shard={self.shard} (or DataParallel.open_stream)")

    def common_seed(self, seed):
        """Rank 0's shuffle seed, drawn there when None: every rank must permute alike."""
        if self.is_root and seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
        return self.comm.bcast(seed, root=0)

    def prepare(self, model, source):
        """Before step 1, on every rank: rank 0's model everywhere (start), equal step counts (or
        a DistributedError on every rank), and the source whose checkpoint state is every
        rank's position (ShardedSource)."""
        self.start(model)
        steps = self.comm.allgather(source.steps_per_epoch)
        self.check_all(None if len(set(steps)) == 1 else
                       f"the ranks would take different numbers of steps per epoch ({steps}): their "
                       f"shards differ by a record and the last batch adds a step on some; choose a "
                       f"batch size for which they are equal")
        return ShardedSource(source, self)

    def train_step(self, model, x, y, interrupted):
        """model.train_step on this rank's batch, the gradients averaged over the ranks before
        the update; (mean loss, samples, correct, interrupted) over all ranks, the same on each."""
        totals = []

        def synchronize(loss, samples, correct):
            totals.append(self.agree(loss * samples, samples, correct, interrupted))
            if totals[0].ending:
                raise DistributedError(_unequal_steps(totals[0].ending, self.world))
            self.average_gradients(model.grads, samples, totals[0].count)

        model.train_step(x, y, before_update=synchronize, validate=False)  # fit checked the data
        t = totals[0]
        return t.loss_sum / t.count, t.count, t.correct, t.stop

    def end_epoch(self, model, interrupted, where):
        """Every rank ends the epoch together (else DistributedError everywhere); the ranks'
        parameters are compared; returns whether any rank was interrupted (Ctrl-C)."""
        totals = self.agree(0.0, 0, None, interrupted, ending=True)
        if totals.ending != self.world:
            raise DistributedError(_unequal_steps(totals.ending, self.world))
        self.check_params(model, where)
        return totals.stop

    # -- checks --------------------------------------------------------------------------------
    def check_params(self, model, where):
        """Compare params_checksum across the ranks; DistributedError on every rank when they
        differ (a rank-dependent computation, or a faulty machine). Collective."""
        sums = self.comm.allgather(params_checksum(model))
        if len(set(sums)) > 1:
            listed = ", ".join(f"rank {r} {s:08x}" for r, s in enumerate(sums))
            raise DistributedError(f"the ranks' parameters differ at {where} (crc32: {listed}); "
                                   f"they no longer train one model")

    def barrier(self):
        self.comm.Barrier()

    def abort(self, code):
        """End every rank of the job now with exit code `code`."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)

    def fail(self, line, code):
        """Print `line` and end the whole job with exit code `code`. Rank 0 does it at once;
        another rank first gives rank 0 REPORT_GRACE_SECONDS, so that a failure every rank
        meets (a missing file) is printed once, by rank 0, while a failure of this rank alone
        (the others wait in a collective) is still printed, by this rank, within seconds."""
        if not (self.is_root and launcher_rank() == 0):  # a mismatched launch has many rank 0s
            time.sleep(REPORT_GRACE_SECONDS)
        print(line, file=sys.stderr, flush=True)
        # The launcher reads a rank's output from a pipe; MPI_Abort reaches it by another way
        # and can end the job before that line is read and forwarded.
        time.sleep(FORWARD_SECONDS)
        self.abort(code)


class ShardedSource:
    """A rank's data source (fastnn/train/sources.py) in a distributed run: batches as the
    source gives them; its checkpoint state holds every rank's position (gathered on rank 0,
    which writes the file), and a restore takes this rank's."""

    def __init__(self, source, ranks):
        self.source, self.ranks = source, ranks
        self.kind, self.batch_size, self.steps_per_epoch = source.kind, source.batch_size, source.steps_per_epoch

    def next_epoch(self):
        return self.source.next_epoch()

    def continue_epoch(self, done):
        return self.source.continue_epoch(done)

    def state(self):
        everyone = self.ranks.comm.gather(self.source.state(), root=0)
        if not self.ranks.is_root:
            return {}, {}
        return ({"ranks": [state for state, _ in everyone]},
                {f"rank{r}.{name}": array for r, (_, arrays) in enumerate(everyone) for name, array in arrays.items()})

    def restore(self, state, arrays):
        prefix = f"rank{self.ranks.rank}."
        mine = {name[len(prefix):]: array for name, array in arrays.items() if name.startswith(prefix)}
        self.source.restore(state["ranks"][self.ranks.rank], mine)


def _unequal_steps(ending, world):
    return (f"the ranks took different numbers of steps: {ending} of {world} ended the epoch while "
            f"the others went on (a data source giving the ranks unequal batch counts, or a "
            f"callback that stopped on one rank only)")


def _install_abort_hook(ranks, errors):
    """An uncaught exception on one rank ends the whole job (see the module docstring)."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        if errors == "traceback":
            previous(kind, value, tb)
        if issubclass(kind, DistributedError):
            # Every rank raised it at the same point, so none waits in a collective: rank 0
            # reports, and the ranks exit (status 1) through MPI_Finalize together. MPI_Abort
            # here could end the job before the launcher forwarded rank 0's line.
            if ranks.is_root:
                print(f"fastnn: error: {error_line(ranks.rank, ranks.world, value)}", file=sys.stderr, flush=True)
            return
        code = 130 if issubclass(kind, KeyboardInterrupt) else 1
        ranks.fail(f"fastnn: error: {error_line(ranks.rank, ranks.world, value)}", code)

    sys.excepthook = hook


def error_line(rank, world, exc):
    """`rank 1 of 2: ValueError: ...` on one line; a DistributedError is about the whole job
    (its message names the rank concerned), so it is given as is."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, DistributedError):
        return text
    return f"rank {rank} of {world}: {type(exc).__name__}: {text}"
