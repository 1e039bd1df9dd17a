"""Figures for training runs (optional: `pip install fastnn[plot]`).

matplotlib is imported inside the functions, so importing this module is free and the core never
pays for it. Figures are built with `matplotlib.figure.Figure` and the Agg canvas, not pyplot:
no global state, no GUI backend, safe on a headless machine and from threads. Every function
writes atomically (temp file in the target folder, then rename) and returns the path written.
"""
import os

import numpy as np

from .atomic import atomic_write

HISTORY_KEYS = ("step_loss", "epoch_train_loss", "epoch_val_loss",
                "epoch_train_accuracy", "epoch_val_accuracy")


def _figure(figsize):
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("fastnn.plot needs matplotlib: pip install 'fastnn[plot]' "
                          "(or pip install matplotlib)") from e
    return Figure(figsize=figsize, layout="constrained")


def _save(fig, path):
    """Write `fig` to `path` atomically; the format comes from the extension (default png)."""
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    with atomic_write(path) as f:
        os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600; a figure is for sharing
        fig.savefig(f, format=fmt, dpi=100)
    return path


def _history_dict(history):
    d = history.as_dict() if hasattr(history, "as_dict") else history
    if not isinstance(d, dict):
        raise TypeError(f"plot_history: expected a dict or an object with .as_dict(), "
                        f"got {type(history).__name__}")
    out = {k: np.asarray(d.get(k) or [], dtype=np.float64) for k in HISTORY_KEYS}
    if not any(v.size for v in out.values()):
        raise ValueError(f"plot_history: nothing to plot; expected some of the keys {HISTORY_KEYS}, "
                         f"got {sorted(d)}")
    return out


def plot_history(history, path):
    """Loss per step (epoch losses overlaid at epoch ends) and train/val accuracy per epoch.

    `history`: a dict with any of the lists in HISTORY_KEYS, or an object with `.as_dict()`
    returning one (fastnn's History). Missing or empty series are left out.
    """
    h = _history_dict(history)
    fig = _figure((10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    steps = h["step_loss"]
    n_epochs = max(h["epoch_train_loss"].size, h["epoch_val_loss"].size)
    if steps.size:
        ax_loss.plot(np.arange(1, steps.size + 1), steps, lw=0.8, alpha=0.6, label="step loss")
        ax_loss.set_xlabel("step")
        # Epoch means sit at the last step of their epoch, so both share the step axis.
        per_epoch = steps.size / n_epochs if n_epochs else 1.0
    else:
        ax_loss.set_xlabel("epoch")
        per_epoch = 1.0
    for key, label in (("epoch_train_loss", "train (epoch)"), ("epoch_val_loss", "val (epoch)")):
        v = h[key]
        if v.size:
            ax_loss.plot(np.arange(1, v.size + 1) * per_epoch, v, marker="o", label=label)
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss")
    for key, label in (("epoch_train_accuracy", "train"), ("epoch_val_accuracy", "val")):
        v = h[key]
        if v.size:
            ax_acc.plot(np.arange(1, v.size + 1), v, marker="o", label=label)
    ax_acc.set_xlabel("epoch")
    ax_acc.xaxis.get_major_locator().set_params(integer=True)
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("accuracy per epoch")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    return _save(fig, path)


def plot_decision_regions(predict_fn, x, y, path, resolution=200, class_names=None):
    """Colour the plane by `predict_fn`'s class over the data's bounding box, data on top.

    predict_fn maps an (M, 2) float32 array to M class ids; it is called once with
    M = resolution**2 (batch inside it if memory is tight).
    """
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"plot_decision_regions: x must be (N, 2), got {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"plot_decision_regions: y must be ({x.shape[0]},), got {y.shape}")
    resolution = int(resolution)
    if resolution < 2:
        raise ValueError(f"plot_decision_regions: resolution must be >= 2, got {resolution}")
    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = 0.05 * np.maximum(hi - lo, 1e-6)
    gx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution, dtype=np.float32)
    gy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution, dtype=np.float32)
    xx, yy = np.meshgrid(gx, gy)
    grid = np.ascontiguousarray(np.stack([xx.ravel(), yy.ravel()], axis=1))
    zz = np.asarray(predict_fn(grid)).reshape(resolution, resolution)
    k = int(max(zz.max(), y.max())) + 1
    fig = _figure((6, 5.5))
    ax = fig.subplots()
    cmap = "tab10" if k <= 10 else "tab20"
    ax.pcolormesh(xx, yy, zz, cmap=cmap, vmin=0, vmax=9 if k <= 10 else 19, alpha=0.35,
                  shading="auto")
    sc = ax.scatter(x[:, 0], x[:, 1], c=y, cmap=cmap, vmin=0, vmax=9 if k <= 10 else 19,
                    s=12, edgecolors="k", linewidths=0.3)
    names = class_names or [str(i) for i in range(k)]
    handles = [ax.scatter([], [], color=sc.cmap(sc.norm(i)), edgecolors="k", label=names[i])
               for i in np.unique(y)]
    ax.legend(handles=handles, loc="best", fontsize="small")
    ax.set_title("decision regions")
    return _save(fig, path)


def plot_confusion(confusion_matrix, path, class_names=None):
    """Heat map of a (C, C) confusion matrix (rows true, columns predicted) with the counts."""
    cm = np.asarray(confusion_matrix)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"plot_confusion: expected a square matrix, got shape {cm.shape}")
    c = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ValueError(f"plot_confusion: {len(names)} class_names for a {c}x{c} matrix")
    fig = _figure((1.0 + 0.55 * c, 0.6 + 0.5 * c) if c > 8 else (5, 4.5))
    ax = fig.subplots()
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_xticks(range(c), names, rotation=45 if max(map(len, names)) > 2 else 0)
    ax.set_yticks(range(c), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    total = cm.sum()
    acc = np.trace(cm) / total if total else 0.0
    ax.set_title(f"confusion (accuracy {acc:.2%})")
    if c <= 20:
        cut = cm.max() / 2 if cm.size else 0
        for i in range(c):
            for j in range(c):
                ax.text(j, i, f"{cm[i, j]:g}", ha="center", va="center", fontsize="small",
                        color="white" if cm[i, j] > cut else "black")
    return _save(fig, path)
