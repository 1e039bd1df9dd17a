"""The data `fastnn train | evaluate | shuffle` read: MNIST-format folders, .npz files with
x_train, y_train, x_test, y_test, pre-shuffled stream files, and the built-in 2-D sets. Each
problem with a file is a UsageError (one line, exit 2) naming the file and what is wrong."""
import os

import numpy as np

from .errors import ModelFileError, shown

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DataError(ValueError):
    """Data the CLI cannot use; the message names the file, the entry and the problem."""


def is_npz(path):
    return path is not None and str(path).endswith(".npz")


def as_input(x, input_shape, where):
    """Samples of any numeric dtype -> float32 shaped (N,) + input_shape: uint8 scaled to [0, 1]
    (pixels), other numbers as they are; the per-sample size must match the model's input."""
    size = int(np.prod(input_shape))
    if int(np.prod(x.shape[1:])) != size:
        raise DataError(f"{where}: per-sample shape {x.shape[1:]} does not fit the model's input "
                        f"{tuple(input_shape)}")
    if x.dtype == np.uint8:
        out = np.multiply(x, np.float32(1 / 255), dtype=np.float32)
    else:
        out = x.astype(np.float32)
    return out.reshape((len(x),) + tuple(input_shape))


def load_mnist(data_dir, input_shape, need_train=True):
    """((x_train, y_train), (x_test, y_test)) shaped for the model, and a note on the source.
    With `data_dir`, only that folder is used; else full MNIST as fastnn.datasets finds it
    without downloading, or the bundled subset with a notice."""
    from . import datasets
    from .data import IdxError, mnist_files, read_labeled
    try:
        if data_dir is not None:  # exactly this folder, any MNIST-format data set
            files = mnist_files(data_dir)
            data = datasets.Mnist(datasets.Split(*read_labeled(files["train_images"], files["train_labels"])),
                                  datasets.Split(*read_labeled(files["test_images"], files["test_labels"])))
            note = f"MNIST-format data from {data_dir}"
        else:
            data, full = datasets.mnist_or_subset()
            note = "full MNIST" if full else datasets.SUBSET_NOTICE
    except (IdxError, OSError) as exc:
        raise DataError(str(exc).replace("\n", " ")) from None
    where = data_dir or "MNIST"
    train = (as_input(data.train.x, input_shape, where), data.train.y.astype(np.int64)) if need_train else None
    return train, (as_input(data.test.x, input_shape, where), data.test.y.astype(np.int64)), note


def read_npz_arrays(path):
    """The four arrays of a data set .npz, validated (no pickle, bounded reader, shapes, dtypes,
    finite features, labels >= 0). Raw: not scaled or reshaped."""
    from .serialize import read_npz
    if not os.path.isfile(path):
        raise DataError(f"--data {path}: no such file")
    try:
        arrays = read_npz(path, what=".npz data set")
    except ModelFileError as exc:
        raise DataError(str(exc)) from None
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)} (an .npz data set holds "
                        f"{', '.join(NPZ_KEYS)}; it has {shown(sorted(arrays))})")
    for split in ("train", "test"):
        x, y = arrays["x_" + split], arrays["y_" + split]
        if x.dtype.kind not in "fiu" or not 2 <= x.ndim <= 4 or len(x) == 0:
            raise DataError(f"{path}: x_{split} must be numbers shaped (samples, features) or "
                            f"(samples, [channels,] height, width), got {x.dtype} {x.shape}")
        if y.dtype.kind not in "iu" or y.shape != (len(x),):
            raise DataError(f"{path}: y_{split} must be {len(x)} integer class labels (one per "
                            f"row of x_{split}), got {y.dtype} {y.shape}")
        if y.min() < 0:
            raise DataError(f"{path}: y_{split} holds a negative label ({y.min()})")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise DataError(f"{path}: x_{split} holds NaN or infinite values")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(f"{path}: x_train samples are {arrays['x_train'].shape[1:]} but x_test "
                        f"samples are {arrays['x_test'].shape[1:]}")
    return arrays


def load_npz(path, input_shape, classes, need_train=True):
    """Like load_mnist, from an .npz data set; labels must be below `classes` (the model's
    outputs)."""
    arrays = read_npz_arrays(path)
    for key in ("y_train", "y_test"):
        if classes is not None and arrays[key].max() >= classes:
            raise DataError(f"{path}: {key} holds label {arrays[key].max()}, but the model has "
                            f"{classes} outputs (labels 0..{classes - 1})")
    train = (as_input(arrays["x_train"], input_shape, path), arrays["y_train"].astype(np.int64)) \
        if need_train else None
    test = (as_input(arrays["x_test"], input_shape, path), arrays["y_test"].astype(np.int64))
    return train, test, f"data set {path}: {len(arrays['x_train'])} train / {len(arrays['x_test'])} test samples"


def load_data(data, kind, input_shape, classes, need_train=True):
    """(train, test, note) for --data (a folder or an .npz file) or the run's built-in kind."""
    if is_npz(data):
        return load_npz(data, input_shape, classes, need_train)
    if data is None and kind not in (None, "mnist"):
        raise DataError(f"the run's data is the built-in {kind!r} set; --data is not used with it")
    if data is None and kind is None and tuple(input_shape) not in ((784,), (1, 28, 28)):
        raise DataError(f"the model's input {tuple(input_shape)} is not MNIST's: give --data "
                        f"(an .npz file or a folder of IDX files)")
    return load_mnist(data, input_shape, need_train)


def open_stream(stream_path, data, input_shape, batch_size, classes, shard=(0, 1)):
    """(training stream, test batches, note): both read with fixed buffers (or the .npz test
    split), so memory stays flat. The test set comes from --data, else $FASTNN_DATA, else the
    bundled subset. `shard`: (rank, ranks) of a distributed run, which reads its slice."""
    from . import datasets
    from .data import IdxBatches, IdxError, ShuffledFileError, ShuffledStream, mnist_files
    layout = "flat" if len(input_shape) == 1 else "nchw"
    errors = (IdxError, ShuffledFileError, OSError, ValueError)
    try:  # the file the user named first: its error is the one to report
        stream = ShuffledStream(stream_path, batch_size, layout=layout, shard=shard)
    except errors as exc:
        raise DataError(str(exc)) from None
    width = stream.layout.rows * stream.layout.cols
    if width != int(np.prod(input_shape)) or (layout == "nchw" and (1, stream.layout.rows,
                                                                     stream.layout.cols) != tuple(input_shape)):
        stream.close()
        raise DataError(f"--stream {stream_path}: records of {stream.layout.rows}x{stream.layout.cols} "
                        f"values do not fit the model's input {tuple(input_shape)}")
    folder = data or os.environ.get("FASTNN_DATA") or datasets.SUBSET_DIR
    try:
        if is_npz(folder):
            _, test, _ = load_npz(folder, input_shape, classes, need_train=False)
        else:
            files = mnist_files(folder, datasets.SUBSET_PREFIX if folder == datasets.SUBSET_DIR else "")
            test = IdxBatches(files["test_images"], files["test_labels"], batch_size=batch_size, layout=layout)
    except errors as exc:
        stream.close()
        raise DataError(str(exc)) from None
    return stream, test, f"training stream {stream_path}; test set from {folder}"


def load_points(kind, seed):
    """The 2-D toy data, scaled to about [-1, 1]^2, and the function that scales raw points."""
    from . import datasets
    if kind == "spiral":
        x, y = datasets.spiral(n_per_class=100, classes=3, seed=seed)
        scale = lambda pts: np.asarray(pts, np.float32)  # noqa: E731 - already in [-1, 1]
    else:
        x, y = datasets.two_class_grid(n=100, seed=seed)
        scale = lambda pts: (np.asarray(pts, np.float32) / 5 - 1).astype(np.float32)  # noqa: E731
    return scale(x), y.astype(np.int64), scale


def npz_to_idx(path, folder):
    """Write the .npz's training split as uint8 IDX files in `folder` (what `fastnn shuffle`
    streams); (images path, labels path). The stream stores one byte per value: features must
    be uint8 and labels below 256."""
    from .data import write_idx
    arrays = read_npz_arrays(path)
    x, y = arrays["x_train"], arrays["y_train"]
    if x.dtype != np.uint8:
        raise DataError(f"{path}: x_train is {x.dtype}; `fastnn shuffle` streams uint8 values "
                        f"(scale your features to 0-255 and store them as uint8)")
    if y.max() > 255:
        raise DataError(f"{path}: y_train holds label {y.max()}; the stream stores labels below 256")
    images = x.reshape(len(x), 1, -1) if x.ndim == 2 else x.reshape(len(x), -1, x.shape[-1])
    paths = os.path.join(folder, "npz-train-images.idx"), os.path.join(folder, "npz-train-labels.idx")
    write_idx(paths[0], images)
    write_idx(paths[1], y.astype(np.uint8))
    return paths
