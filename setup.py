"""Build the Cython kernels in src_c/ as extension modules fastnn._<family>.

-O3, OpenMP and -march=native by default: `pip install .` compiles on the machine that will
run the kernels, and the CPU's own vector units made training steps 4-22% faster than the
x86-64 baseline (nielsen 1.12x, mlp 1.11x, lenet 1.22x at one thread, measured side by side).
FASTNN_PORTABLE=1 builds for the baseline instead (a wheel meant for other machines); the
small-batch GEMM still picks AVX2+FMA at run time there. If the compiler has no OpenMP the
package still builds (serial kernels), which fastnn.info() reports.
BLAS is not linked here: fastnn._runtime binds the OpenBLAS of the scipy-openblas32
wheel at import time (see src_c/_blas.pxd for why).
"""
import glob
import os
import subprocess
import sys
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup


OPENMP_PROBE = "#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n"


def _compiler_accepts(flag, program="int main(void){return 0;}\n"):
    """True when the C compiler compiles and links `program` with `flag`."""
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "t.c")
        with open(src, "w") as f:
            f.write(program)
        cmd = [cc, flag, src, "-o", os.path.join(tmp, "t")]
        return subprocess.run(cmd, capture_output=True).returncode == 0


# No errno or FP traps: lets gcc vectorise exp/tanh loops and if-convert selects (ReLU, max-pool).
compile_args = ["-O3", "-ffp-contract=fast", "-fno-math-errno", "-fno-trapping-math"]
link_args = []
if _compiler_accepts("-fopenmp", OPENMP_PROBE):
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")
else:
    print("fastnn: compiler has no OpenMP; building serial kernels", file=sys.stderr)
if os.environ.get("FASTNN_PORTABLE") != "1" and _compiler_accepts("-march=native"):
    compile_args.append("-march=native")

build_flags = " ".join(compile_args)
extensions = [
    Extension(
        "fastnn._" + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=["src_c"],
        # the C headers and Cython .pxd/.pxi files each module may include: an edit to one
        # rebuilds the modules (setuptools otherwise looks at the .pyx alone)
        depends=sorted(glob.glob("src_c/*.h") + glob.glob("src_c/*.pxd") + glob.glob("src_c/*.pxi")),
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=[("FASTNN_BUILD_FLAGS", '"%s"' % build_flags),
                       ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for path in sorted(glob.glob("src_c/*.pyx"))
    # Development shortcut: FASTNN_ONLY=conv,pool rebuilds just those families.
    if not os.environ.get("FASTNN_ONLY")
    or os.path.splitext(os.path.basename(path))[0] in os.environ["FASTNN_ONLY"].split(",")
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["src_c"],
        compiler_directives={"language_level": 3},
    ),
)
