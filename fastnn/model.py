"""Sequential: a Network (fastnn/network.py) that trains (fit, resume) and lives in files
(save, load). The top of the library: it joins the network core, the training loop
(fastnn/train/) and the file formats (fastnn/serialize.py), which know nothing of each other's
classes."""
import os

from .errors import ConfigError, ModelFileError
from .network import Network
from .serialize import optimizer_state, read_model_file, write_model
from .train import loop
from .train.checkpoint import read_checkpoint

class Sequential(Network):
    """A stack of layers trained with one loss and one optimizer.

        model = Sequential([Dense(50, "relu"), Dense(10)], loss=SoftmaxCrossEntropy(),
                           optimizer=SGD(lr=0.1), input_shape=(784,), seed=0)
        history = model.fit(x, y, epochs=16, batch_size=100, validation_data=(xt, yt))

    The model builds (allocates its flat parameter array) when it knows the per-sample input
    shape: from `input_shape` or from the first data it sees. `seed` fixes the initial weights;
    `dtype` is float32 (speed) or float64 (gradient checks).
    """

    def fit(self, x, y=None, epochs=1, batch_size=32, validation_data=None, callbacks=None,
            shuffle=True, seed=None, verbose=1, initial_state=None, distributed=None):
        """Train; returns a History.

        x, y: arrays (samples first; y int class labels or float targets), or `x` a data
            stream from fastnn.data (it carries labels, batch size and epochs: y, batch_size
            and shuffle are then ignored).
        epochs, batch_size: the schedule; shuffle: reshuffle the samples every epoch with
            `seed` (same seed, same order, bit-identical weights at a given thread count).
        validation_data: (x, y) or an iterable of (x, y) batches, evaluated after every epoch
            (checked before the first step).
        callbacks: fastnn callbacks (EarlyStopping, Checkpoint, HistoryWriter, EpochPrinter...).
        verbose: 1 shows a progress bar on a terminal, 0 is silent.
        initial_state: what `load_checkpoint` returned, to continue that run (see `resume`).
        distributed: a fastnn.distributed.DataParallel: train as one rank of an MPI job
            (docs/distributed.md); batch_size is the global batch, a stream is this rank's shard.
        Raises TrainingDiverged when the loss becomes NaN or infinite; Ctrl-C stops after the
        current step when a Checkpoint callback is there to save it."""
        return loop.fit(self, x, y, epochs=epochs, batch_size=batch_size, validation_data=validation_data,
                        callbacks=callbacks, shuffle=shuffle, seed=seed, verbose=verbose,
                        initial_state=initial_state, distributed=distributed)

    def save(self, path):
        """Architecture (JSON) + weights + optimizer state in one .npz file, written atomically
        (a crash leaves the old file or the new one). No pickle: read back with fastnn.load."""
        write_model(path, self)

    def to_onnx(self, path, *, probabilities=False, opset=17):
        """Export to an ONNX file for ONNX Runtime or any ONNX consumer (needs the extra:
        pip install "fastnn[onnx]"); see fastnn.onnx.to_onnx and docs/onnx.md. Returns path."""
        from . import onnx  # optional face: imported only when asked for
        return onnx.to_onnx(self, path, probabilities=probabilities, opset=opset)


def model_from_file(config, arrays, path):
    """The model a model file describes, with its weights and optimizer state."""
    # The weights are bounded by the reader (fastnn.serialize); the architecture must agree with
    # them before anything is allocated (build's expect_params), so a file cannot ask for more.
    params = arrays.get("params")
    try:
        model = Sequential.from_config(dict(config, input_shape=None))
        if config.get("input_shape") is not None:
            if params is None:
                raise ModelFileError(f"{path}: the model is built (input_shape) but has no weights")
            model.build(config["input_shape"], expect_params=params.size)
    except ConfigError as exc:
        raise ModelFileError(f"{path}: bad architecture: {exc}") from None
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path}: the saved architecture does not build: {exc}") from None
    if model.input_shape is None:
        return model
    if params.shape != model.params.shape or params.dtype.kind != "f":
        raise ModelFileError(f"{path}: weights have shape {params.shape} and dtype {params.dtype}, "
                             f"the architecture needs {model.params.shape} floats")
    model.params[...] = params
    if model.optimizer is not None:
        state = optimizer_state(config, arrays)
        if state:
            try:
                model.optimizer.load_state_dict(state)
            except (ValueError, KeyError, TypeError) as exc:
                raise ModelFileError(f"{path}: optimizer state does not fit: {exc}") from None
    return model


def load(path):
    """Rebuild a model saved by `model.save(path)` (or a checkpoint's model); raises
    ModelFileError for anything else, within bounded memory whatever the file holds."""
    path = os.fspath(path)
    config, arrays = read_model_file(path)
    return model_from_file(config, arrays, path)


def load_checkpoint(path):
    """(model, initial_state, run_info) of a checkpoint: pass initial_state to model.fit to
    continue the run (fastnn.resume does); run_info is what the Checkpoint callback recorded."""
    path = os.fspath(path)
    config, arrays, state, training_arrays = read_checkpoint(path)
    model = model_from_file(config, arrays, path)
    if model.optimizer is None or model.input_shape is None:
        raise ModelFileError(f"{path}: a checkpoint needs a built model with an optimizer")
    return model, (state, training_arrays), state.get("run_info")


def resume(path, x, y=None, validation_data=None, callbacks=None, verbose=1):
    """Continue the run saved in checkpoint `path` on the same data (arrays, or a stream over
    the same file); returns (model, history), the history covering the whole run. Epochs,
    batch size, shuffling and seed come from the checkpoint."""
    model, initial_state, _ = load_checkpoint(path)
    fit = initial_state[0]["fit"]
    history = model.fit(x, y, epochs=fit["epochs"], batch_size=fit["batch_size"],
                        validation_data=validation_data, callbacks=callbacks, shuffle=fit["shuffle"],
                        seed=fit["seed"], verbose=verbose, initial_state=initial_state)
    return model, history
