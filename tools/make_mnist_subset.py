"""Make the bundled MNIST subset in fastnn/datasets_data/ (reproducible: same source + seed ->
same bytes).

    python tools/make_mnist_subset.py --src ../shared/data/mnist

Takes a stratified sample (seeded; default 300 train and 100 test images per digit) of full
MNIST, checks the source against the canonical md5s, writes gzipped IDX files under the
canonical names and a README.md with the CC BY-SA 3.0 attribution, provenance and md5s.
"""
import argparse
import gzip
import hashlib
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from fastnn import datasets  # noqa: E402
from fastnn.atomic import atomic_write  # noqa: E402
from fastnn.data import idx  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fastnn", "datasets_data")


def stratified(labels, per_class, rng):
    """Indices of `per_class` examples of each class, drawn without replacement, in source order."""
    picks = []
    for c in range(10):
        where = np.flatnonzero(labels == c)
        if len(where) < per_class:
            raise SystemExit(f"class {c} has only {len(where)} examples, {per_class} asked")
        picks.append(rng.choice(where, per_class, replace=False))
    return np.sort(np.concatenate(picks))


def idx_bytes(arr, scratch):
    """The raw IDX bytes of `arr`, as fastnn.data.idx.write_idx writes them."""
    try:
        idx.write_idx(scratch, arr)
        with open(scratch, "rb") as f:
            return f.read()
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)


def md5(data):
    return hashlib.md5(data).hexdigest()


README = """# Bundled MNIST subset

A stratified sample of the MNIST database of handwritten digits, bundled so that fastnn's
examples, CLI and tests run without a download: **{n_train:,} training images ({train_pc} per
digit) and {n_test:,} test images ({test_pc} per digit)**, 28x28 grayscale, labels 0-9, in the
original IDX format, gzip-compressed. Load it with `fastnn.datasets.mnist_subset()`; for the
full 60,000 / 10,000 use `fastnn.datasets.mnist()`.

## Attribution and license

The MNIST database is by **Yann LeCun, Corinna Cortes and Christopher J.C. Burges**
(http://yann.lecun.com/exdb/mnist/). It is licensed under the Creative Commons
Attribution-Share Alike 3.0 license, **CC BY-SA 3.0**
(https://creativecommons.org/licenses/by-sa/3.0/). This subset is a derivative (a selection of
records, unmodified) and is distributed under the same license; keep this notice with any copy.
The license of these four files is CC BY-SA 3.0, not fastnn's MIT license.

## Provenance and how it was made

Source: the four canonical MNIST files, checked against the md5s of their decompressed bytes
(train-images {src_train_images}, t10k-images {src_test_images}, labels as in
`fastnn.datasets.MNIST_MANIFEST`). Made by `tools/make_mnist_subset.py` with

    python tools/make_mnist_subset.py --src <folder with the MNIST files> \\
        --train-per-class {train_pc} --test-per-class {test_pc} --seed {seed}

For each digit it draws {train_pc} training and {test_pc} test records without replacement with
`numpy.random.default_rng({seed})` (train first, then test, digits 0-9 in order) and keeps them
in their original order. The records are byte-for-byte the originals. Source indices:
`subset-train-indices.txt` / `subset-t10k-indices.txt` (0-based, one per line).
The .gz files are written with `gzip.compress(raw, compresslevel=9, mtime=0)`, so the same
source and seed give the same bytes (with the same zlib); the decompressed md5s never vary.
The files carry the canonical MNIST names so the same loader reads them, but they hold the
subset: `fastnn.datasets.mnist()` rejects this folder by its record counts.

## Files

| file | records | bytes | md5 of the file | md5 of the decompressed bytes |
|---|---|---|---|---|
{table}
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", required=True, help="folder with the four MNIST IDX files (.gz or raw)")
    p.add_argument("--out", default=OUT)
    p.add_argument("--train-per-class", type=int, default=300)
    p.add_argument("--test-per-class", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    src = datasets._check_folder(a.src, datasets.MNIST_MANIFEST, verify=True)
    full = datasets._load(src)
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.out, exist_ok=True)
    rows = []
    for split, (x, y), per_class, prefix in (("train", full.train, a.train_per_class, "train"),
                                             ("test", full.test, a.test_per_class, "t10k")):
        keep = stratified(y, per_class, rng)
        with atomic_write(os.path.join(a.out, f"{datasets.SUBSET_PREFIX}{prefix}-indices.txt"), "w") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600
            f.write("".join(f"{i}\n" for i in keep))
        for kind, arr in (("images", x[keep]), ("labels", y[keep].astype(np.uint8))):
            name = f"{datasets.SUBSET_PREFIX}{prefix}-{kind}-idx{arr.ndim}-ubyte"
            raw = idx_bytes(arr, os.path.join(a.out, name + ".tmp"))
            # gzip here, not in write_idx: level 9 and mtime 0 make the bytes reproducible.
            gz = gzip.compress(raw, compresslevel=9, mtime=0)
            with atomic_write(os.path.join(a.out, name + ".gz")) as f:
                os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600
                f.write(gz)
            rows.append(f"| {name}.gz | {' x '.join(map(str, arr.shape))} | {len(gz):,} "
                        f"| {md5(gz)} | {md5(raw)} |")
            print(f"{name}.gz  {arr.shape}  {len(gz):,} bytes")
    m = datasets.MNIST_MANIFEST
    text = README.format(n_train=10 * a.train_per_class, n_test=10 * a.test_per_class,
                         train_pc=a.train_per_class, test_pc=a.test_per_class, seed=a.seed,
                         src_train_images=m["train-images-idx3-ubyte"].md5,
                         src_test_images=m["t10k-images-idx3-ubyte"].md5, table="\n".join(rows))
    with atomic_write(os.path.join(a.out, "README.md"), "w") as f:
        os.fchmod(f.fileno(), 0o644)
        f.write(text)
    total = sum(os.path.getsize(os.path.join(a.out, n)) for n in os.listdir(a.out))
    print(f"{a.out}: {total:,} bytes in all")


if __name__ == "__main__":
    main()
