"""Resumable training checkpoints: a model file (fastnn.load reads it) plus the training state.

    model.fit(x, y, epochs=5, seed=0, callbacks=[fastnn.Checkpoint("run.ckpt", every_n_steps=50)])
    # ... killed at any point ...
    model, history = fastnn.resume("run.ckpt", x, y, callbacks=[fastnn.Checkpoint("run.ckpt", every_n_steps=50)])

The resumed run ends with weights and history bit-identical to an uninterrupted run (same
machine, same thread count): the file holds the weights, the optimizer state (SGD velocity,
Adam m/v/t, RandomSearch RNG), the run's TrainState (epoch, position in it, the shuffle RNG
state and the epoch's permutation or the stream's file epoch and position_index, the global
step, the running epoch sums, callback state such as EarlyStopping's, the history) and
`run_info`, facts the caller recorded about the run (the CLI's arguments). Epoch timings are
the only things not reproduced. fit's epochs, batch_size, shuffle and seed come from the file.

Every entry is covered by a sha256 digest checked on load; a corrupt or truncated file raises
ModelFileError. Writes are atomic, and weights that are not finite are never written
(TrainingDiverged instead), so the last good checkpoint survives crashes and divergence.
This module reads and writes; fastnn.model builds the model from what it reads.
"""
import numpy as np

from ..errors import CheckpointError, TrainingDiverged
from ..serialize import read_model_file, write_model

FORMAT = "fastnn.checkpoint"
VERSION = 1
PREFIX = "training."  # the entries of the training state's arrays


def save_checkpoint(path, model, state, run_info=None):
    """Write `model` and its run's TrainState to `path`, atomically (only where
    state.writes_files: rank 0 of a distributed run)."""
    arrays = {"params": model.params, **{k: v for k, v in model.optimizer.state_dict().items()
                                         if isinstance(v, np.ndarray)}}
    for name, array in arrays.items():
        if array is not None and array.dtype.kind == "f" and not np.isfinite(array).all():
            raise TrainingDiverged(f"checkpoint: {name} is not finite after step {state.global_step}; "
                                   f"kept the previous checkpoint {path}")
    snapshot, extra = state.snapshot()  # collective in a distributed run: every rank takes it
    if not state.writes_files:
        return
    training = {"format": FORMAT, "version": VERSION, **snapshot, "run_info": run_info}
    write_model(path, model, extra_arrays={PREFIX + k: v for k, v in extra.items()},
                extra_config={"training": training})


def read_checkpoint(path):
    """(config, arrays, training state, training arrays) of a checkpoint file; CheckpointError
    for a model file without training state, ModelFileError for a damaged file."""
    config, arrays = read_model_file(path, what="fastnn checkpoint")
    state = config.get("training")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: a model file without training state, not a checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')!r} is not "
                              f"supported (this fastnn reads {VERSION})")
    fit = state.get("fit")
    if not isinstance(fit, dict) or not {"epochs", "batch_size", "shuffle", "seed", "kind"} <= set(fit):
        raise CheckpointError(f"{path}: incomplete training state (fit settings missing)")
    training_arrays = {k[len(PREFIX):]: arrays.pop(k) for k in list(arrays) if k.startswith(PREFIX)}
    return config, arrays, state, training_arrays
