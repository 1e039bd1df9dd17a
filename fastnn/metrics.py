"""Classification metrics on integer class ids (numpy only, no plotting dependency)."""
import numpy as np


def _class_ids(name, y, num_classes):
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D class ids, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class ids, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name} has ids in [{y.min()}, {y.max()}] but num_classes={num_classes} "
                         f"allows 0..{num_classes - 1}")
    return y.astype(np.int64, copy=False)


def confusion_matrix(y_true, y_pred, num_classes):
    """(num_classes, num_classes) int64 counts: row = true class, column = predicted class."""
    num_classes = int(num_classes)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    t = _class_ids("y_true", y_true, num_classes)
    p = _class_ids("y_pred", y_pred, num_classes)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.shape[0]} labels but y_pred has {p.shape[0]}")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64, copy=False)


def accuracy(y_true, y_pred):
    """Fraction of equal ids (0.0 for empty input)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    return float(np.mean(t == p)) if t.size else 0.0
