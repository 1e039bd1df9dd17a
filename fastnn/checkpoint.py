"""Resumable training checkpoints: a model file (fastnn.load reads it) plus the training state.

    model.fit(x, y, epochs=5, seed=0, callbacks=[fastnn.Checkpoint("run.ckpt", every_n_steps=50)])
    # ... killed at any point ...
    model, history = resume("run.ckpt", x, y, callbacks=[fastnn.Checkpoint("run.ckpt", every_n_steps=50)])

The resumed run ends with weights and history bit-identical to an uninterrupted run (same
machine, same thread count): the file holds the weights, the optimizer state (SGD velocity,
Adam m/v/t, RandomSearch RNG), the epoch, the position in it, the shuffle RNG state and the
epoch's permutation (or the stream's file epoch and position_index), the global step, the
running epoch sums, callback state (EarlyStopping) and the history. Epoch timings are the
only things not reproduced. fit's epochs, batch_size, shuffle and seed come from the file.

Every entry is covered by a sha256 digest checked on load; a corrupt or truncated file raises
ModelFileError. Writes are atomic, and weights that are not finite are never written
(TrainingDiverged instead), so the last good checkpoint survives crashes and divergence.
"""
import os

import numpy as np

from .serialize import ModelFileError, model_from_arrays, read_npz, save_model

FORMAT = "fastnn.checkpoint"
VERSION = 1


class CheckpointError(ModelFileError):
    """A file without training state, or a checkpoint that does not fit the data given."""


def save_checkpoint(path, model, run):
    """Write `model` and the state of `run` (a training.Run) to `path`, atomically."""
    from .training import TrainingDiverged
    arrays = {"params": model.params, **{k: v for k, v in model.optimizer.state_dict().items()
                                         if isinstance(v, np.ndarray)}}
    for name, array in arrays.items():
        if array is not None and array.dtype.kind == "f" and not np.isfinite(array).all():
            raise TrainingDiverged(f"checkpoint: {name} is not finite after step {model.global_step}; "
                                   f"kept the previous checkpoint {path}")
    state, extra = run.snapshot()
    save_model(model, path, extra_arrays={"training." + k: v for k, v in extra.items()},
               extra_config={"training": {"format": FORMAT, "version": VERSION, **state}})


def load_checkpoint(path):
    """(model, state, arrays) of a checkpoint; ModelFileError when the file is damaged."""
    path = os.fspath(path)
    arrays = read_npz(path, what="fastnn checkpoint")
    model, config = model_from_arrays(arrays, path)
    state = config.get("training")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: a model file without training state, not a checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')!r} is not "
                              f"supported (this fastnn reads {VERSION})")
    if model.optimizer is None or model.input_shape is None:
        raise CheckpointError(f"{path}: a checkpoint needs a built model with an optimizer")
    return model, state, {k[len("training."):]: v for k, v in arrays.items() if k.startswith("training.")}


def resume(path, x, y=None, validation_data=None, callbacks=None, verbose=1):
    """Continue the run saved in checkpoint `path` on the same data (arrays, or a stream over
    the same file); returns (model, history), history covering the whole run."""
    from .training import run_fit
    model, state, arrays = load_checkpoint(path)
    fit = state.get("fit")
    if not isinstance(fit, dict) or not {"epochs", "batch_size", "shuffle", "seed"} <= set(fit):
        raise CheckpointError(f"{path}: incomplete training state (fit settings {fit!r})")
    history = run_fit(model, x, y, fit["epochs"], fit["batch_size"], validation_data, callbacks,
                      fit["shuffle"], fit["seed"], verbose, resume=(state, arrays))
    return model, history
