"""The kernels' build levels (src_c/fastnn_cpu.h, fastnn/_isa.py): every level this CPU runs,
forced with FASTNN_ISA in its own process (the choice is made once per process), against numpy
references and against the other levels; and FASTNN_ISA's errors. The AVX-512 level's tests
skip, saying so, on a CPU without AVX-512."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import _isa

import isa_child as child
import networks as nw
import reference as ref

BEST = fastnn.info()["isa_best"]
RUNNABLE = _isa.LEVELS[:_isa.LEVELS.index(BEST) + 1]


def _levels():
    for level in _isa.LEVELS:
        yield pytest.param(level, marks=pytest.mark.skipif(
            level not in RUNNABLE, reason=f"this CPU runs fastnn's kernels at most at {BEST!r}, "
                                          f"not {level!r} (avx512 needs avx512f + avx512vl)"))


LEVELS = list(_levels())
_runs = {}


def run(level):
    """The child's results at FASTNN_ISA=level (one subprocess per level per session)."""
    if level not in _runs:
        out = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"fastnn_isa_{os.getpid()}_{level}.npz")
        env = dict(os.environ, FASTNN_ISA=level)
        done = subprocess.run([sys.executable, child.__file__, out], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        with np.load(out) as saved:
            _runs[level] = {key: saved[key] for key in saved.files}
        os.remove(out)
        _runs[level]["ran"] = json.loads(str(_runs[level]["ran"]))
    return _runs[level]


def _assert_close(got, want, name):
    # As tests/test_conv_direct.py: float32 sums of up to 36,864 products round at ~1e-6 of
    # their scale; a wrong tap, lane or tile is off by the scale itself.
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale, err_msg=name)


@pytest.mark.parametrize("level", LEVELS)
def test_the_forced_level_runs_in_every_kernel_family(level):
    ran = run(level)["ran"]
    assert ran["info"]["isa"] == level and ran["info"]["isa_source"] == "FASTNN_ISA"
    simd = {"avx512": "avx512f+fma", "avx2": "avx2+fma", "baseline": "baseline"}[level]
    assert ran["info"]["small_gemm_simd"] == simd and ran["info"]["direct_conv_simd"] == simd
    assert ran["info"]["activation_simd"] == simd
    # max-pool: 16 lanes only for rows of >= 16 outputs (21 here; 12 and 4 stay 8- and 4-lane)
    want_pool = ["avx512" if level == "avx512" and shape[3] // 2 >= 16 else
                 "avx2" if level != "baseline" else "baseline" for shape in child.POOL_SHAPES]
    assert ran["pool_isa"] == want_pool
    for (xs, ws), pieces, algorithms in zip(child.CONV_CASES, ran["direct_isa"], ran["algorithms"]):
        q = xs[3] - ws[3] + 1
        # 16 lanes only for rows of >= 16 columns; narrower rows stay on the 8-lane clone
        want = "avx512" if level == "avx512" and q >= 16 else "avx2" if level != "baseline" else "baseline"
        assert set(pieces.values()) == {want}, (xs, ws, pieces)
        assert (algorithms["forward"] == "direct") == (level != "baseline"), (xs, ws, algorithms)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("case", range(len(child.CONV_CASES)),
                         ids=[f"x{xs}-w{ws}".replace(" ", "") for xs, ws in child.CONV_CASES])
def test_conv_matches_numpy(level, case):
    got = run(level)
    x, w, b, dy = child.conv_inputs(case)
    _assert_close(got[f"conv{case}_y"], ref.conv2d_forward(x, w, b), "y")
    want_dx, want_dw, _ = ref.conv2d_backward(dy, x, w)
    _assert_close(got[f"conv{case}_dx"], want_dx, "dx")
    _assert_close(got[f"conv{case}_dw"], want_dw, "dw")


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("case", range(len(child.GEMM_CASES)),
                         ids=["{}{}-{}x{}x{}".format(*c) for c in child.GEMM_CASES])
def test_small_gemm_matches_numpy(level, case):
    op_a, op_b, m, n, k = child.GEMM_CASES[case]
    a, b, c = (v.astype(np.float64) for v in child.gemm_inputs(case))
    a, b = (a.T if op_a == "T" else a), (b.T if op_b == "T" else b)
    want = 1.5 * a @ b + 0.5 * c
    # float32 rounding is a small multiple of eps times the sum of |terms|; one missing or
    # doubled product is about that sum / k, far above this
    bound = 1.5 * np.abs(a) @ np.abs(b) + 0.5 * np.abs(c)
    error = np.abs(run(level)[f"gemm{case}"] - want)
    assert np.all(error <= 2e-5 * bound), float(np.max(error / bound))


@pytest.mark.parametrize("level", LEVELS)
def test_activations_match_numpy_and_the_vector_levels_give_the_same_bits(level):
    # fastnn_elementwise.h: one C body in three builds, each lane the scalar iteration's
    # operations, so the AVX2 and AVX-512 builds agree to the bit (the baseline build too when
    # it has FMA, -march=native; a portable one rounds once more where they fuse); all agree
    # with numpy within float32 rounding (sigmoid's exp is a ~1 ulp polynomial: fastnn_expf.h).
    got = run(level)
    base = run("avx2") if level != "baseline" else got
    x, dy = child.activation_inputs()
    for name in ("relu", "sigmoid", "tanh"):
        with np.errstate(invalid="ignore"):  # the NaN input
            want_y = getattr(ref, name)(x)
        np.testing.assert_allclose(got[f"{name}_y"], want_y, rtol=1e-6, atol=1e-7, err_msg=name)
        want_dx = getattr(ref, f"{name}_backward")(dy, got[f"{name}_y"])
        np.testing.assert_allclose(got[f"{name}_dx"], want_dx, rtol=1e-6, atol=1e-7, err_msg=name)
        for part in ("y", "dx"):
            np.testing.assert_array_equal(got[f"{name}_{part}"], base[f"{name}_{part}"], err_msg=name)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("case", range(len(child.POOL_SHAPES)),
                         ids=[f"Q{s[3] // 2}" for s in child.POOL_SHAPES])
def test_maxpool_matches_numpy_at_every_level(level, case):
    want_y, want_at = ref.maxpool2d_forward(child.pool_inputs(case), (2, 2), (2, 2))
    got = run(level)
    np.testing.assert_array_equal(got[f"pool{case}_y"], want_y)  # NaN where the window has it
    np.testing.assert_array_equal(got[f"pool{case}_argmax"], want_at)


def _assert_per_array(got, want, tol, what, slack):
    """As tests/test_composition.py judges a model's gradients: each parameter array on its own
    scale (or 1e-3 of the network's largest), beyond its rounding noise `slack`."""
    floor = 1e-3 * float(np.max(np.abs(want)))
    for name, part in nw.param_slices(child.LENET):
        error = nw.scaled_error(got[part], want[part], floor, slack[part])
        assert error <= tol, f"{what} of {name}: error {error:.3g} > {tol:g}"


@pytest.mark.parametrize("level", LEVELS)
def test_lenet_gradient_matches_the_reference_net(level):
    got = run(level)
    x, y = nw.make_data(child.LENET)
    want = nw.reference_pass(child.LENET, got["lenet_params"], x, y)
    # No pre-activation within 3e-5 of a kink: float32 rounds LeNet's pre-activations (sums of
    # at most 800 products of O(1) terms) by ~1e-6, so every level takes the oracle's side.
    # (The composition tests' 1e-4 is out of reach with LeNet's ~50,000 ReLU inputs.)
    assert want["margin"] > 3e-5
    assert nw.scaled_error(got["lenet_output"], want["output"], 1.0) <= 5e-5
    assert np.isfinite(got["lenet_grads"]).all()
    _assert_per_array(got["lenet_grads"], want["grads"], 2e-3, "gradient", want["noise"])


@pytest.mark.parametrize("level", [p for p in LEVELS if p.values[0] != "baseline"])
def test_levels_agree_on_lenet_gradients_and_fit_steps(level):
    # Against the baseline build: the same sums in another order, so equal within float32
    # rounding; after FIT_STEPS SGD steps each parameter array's change still agrees.
    base, got = run("baseline"), run(level)
    np.testing.assert_array_equal(got["lenet_params"], base["lenet_params"])
    noise = nw.reference_pass(child.LENET, base["lenet_params"], *nw.make_data(child.LENET))["noise"]
    _assert_per_array(got["lenet_grads"], base["lenet_grads"], 1e-3, "gradient", 2 * noise)
    start = base["lenet_params"].astype(np.float64)
    moved_base, moved = base["fit_params"] - start, got["fit_params"] - start
    assert np.max(np.abs(moved_base)) > 1e-3  # the steps did move the weights
    _assert_per_array(moved, moved_base, 1e-3, "fit step change", np.zeros_like(moved))


# -- FASTNN_ISA's own contract ----------------------------------------------------------------
def test_unset_runs_the_cpus_best_level_and_each_kernels_preference():
    code = ("import json, fastnn; from fastnn import _conv; i = fastnn.info(); print(json.dumps([i['isa'], "
            "i['isa_source'], i['small_gemm_simd'], _conv.direct_isa((64, 1, 28, 28), (20, 1, 5, 5))]))")
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_ISA"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    isa, source, gemm, conv1 = json.loads(done.stdout)
    assert (isa, source) == (BEST, "cpu")
    # At the AVX-512 level each kernel keeps its AVX2 clone unless its own AVX-512 one measured
    # at least as fast (the *_AVX512_BY_DEFAULT constants): either way a vector build.
    vector = {"avx512": ("avx512f+fma", "avx2+fma"), "avx2": ("avx2+fma",), "baseline": ("baseline",)}[BEST]
    assert all(part.split()[-1] in vector for part in gemm.split(", ")), gemm
    assert set(conv1.values()) <= {"avx512": {"avx512", "avx2"}}.get(BEST, {BEST}), conv1


def test_unknown_value_fails_import_naming_the_variable():
    code = "import fastnn"
    done = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, FASTNN_ISA="sse9"),
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert "ValueError: FASTNN_ISA must be one of" in done.stderr and "'sse9'" in done.stderr


def test_a_level_above_the_cpu_is_refused(monkeypatch):
    # Any CPU: pretend this one stops at avx2 (the kernels' own guard clamps to the CPU's best).
    monkeypatch.setattr(_isa._runtime_c, "isa_best", lambda: "avx2")
    with pytest.raises(ValueError, match="FASTNN_ISA='avx512' asks for kernels this CPU cannot run"):
        _isa.check({"FASTNN_ISA": "avx512"})
    with pytest.raises(ValueError, match="one of 'baseline', 'avx2' on this CPU"):
        _isa.check({"FASTNN_ISA": "AVX2"})
    for fine in ({}, {"FASTNN_ISA": ""}, {"FASTNN_ISA": "avx2"}, {"FASTNN_ISA": "baseline"}):
        _isa.check(fine)


@pytest.mark.skipif(BEST == "avx512", reason="this CPU runs AVX-512: no level above it to refuse")
def test_avx512_on_a_cpu_without_it_fails_import():
    done = subprocess.run([sys.executable, "-c", "import fastnn"],
                          env=dict(os.environ, FASTNN_ISA="avx512"), capture_output=True, text=True)
    assert done.returncode != 0 and "cannot run" in done.stderr


def test_the_choice_is_made_once_per_process(monkeypatch):
    before = fastnn.info()["isa"]
    monkeypatch.setenv("FASTNN_ISA", "baseline" if before != "baseline" else BEST)
    assert fastnn.info()["isa"] == before
    assert fastnn._conv.isa() == fastnn._dense.isa() == fastnn._pool.isa() == before
