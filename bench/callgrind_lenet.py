"""Instruction counts of LeNet's layer-by-layer training step, for before/after comparisons of
kernel changes that timings on a shared machine are too noisy to judge.

    FASTNN_PORTABLE=1 python setup.py build_ext --inplace     # valgrind has no AVX-512
    PYTHONHASHSEED=0 OPENBLAS_CORETYPE=Haswell valgrind --tool=callgrind \\
        --callgrind-out-file=cg.%p python bench/callgrind_lenet.py STEPS [BATCH]

Run with STEPS=0 and STEPS=3: the difference of the two totals ("Collected") is three steps
(forward, loss, backward, SGD with momentum) on one fixed batch at one thread, the import and
model building cancelled out. The portable build still runs the AVX2+FMA clones of the direct
convolution and the small GEMM (picked at run time), as a native build would.
"""
import sys

import numpy as np

import fastnn
from fastnn import zoo

fastnn.set_num_threads(1)
steps, batch = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 16
model = zoo.get("lenet").build(seed=0)
rng = np.random.default_rng(0)
x = rng.random((batch, 1, 28, 28), dtype=np.float32)
y = rng.integers(0, 10, batch)
losses = [model.train_step(x, y) for _ in range(steps)]
print(f"steps {steps}, batch {batch}, losses {losses}, direct_conv_simd "
      f"{fastnn.info()['direct_conv_simd']}")
