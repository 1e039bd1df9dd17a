"""fastnn: neural networks with Cython + OpenMP kernels for small CPU-only machines."""
from . import _openmp_env  # first: sets OpenMP's wait policy before any kernel loads libgomp
from ._runtime import get_num_threads, info, set_num_threads
from . import ops
from .errors import CheckpointError, ConfigError, ModelFileError, TrainingDiverged
from .gradcheck import gradcheck
from .layers import Conv2D, Dense, Depool2D, Flatten, MaxPool2D, MaxUnpool2D, ReLU, Sigmoid, Tanh
from .losses import MSE, BinaryCrossEntropy, SoftmaxCrossEntropy
from .model import Sequential, load, load_checkpoint, resume
from .optim import SGD, Adam, RandomSearch
from .train.callbacks import Checkpoint, EarlyStopping, EpochPrinter, HistoryWriter, ProgressBar
from .train.state import History, TrainState

__all__ = [
    "ops", "set_num_threads", "get_num_threads", "info", "gradcheck", "load", "ModelFileError",
    "Sequential", "Dense", "Conv2D", "MaxPool2D", "MaxUnpool2D", "Depool2D", "Flatten", "ReLU",
    "Sigmoid", "Tanh", "SoftmaxCrossEntropy", "MSE", "BinaryCrossEntropy", "SGD", "Adam",
    "RandomSearch", "History", "ProgressBar", "EpochPrinter", "EarlyStopping", "Checkpoint",
    "HistoryWriter", "TrainingDiverged", "resume", "load_checkpoint", "CheckpointError",
    "ConfigError", "TrainState",
]
