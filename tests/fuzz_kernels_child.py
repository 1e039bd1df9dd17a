"""Fuzz the fastnn.ops boundary; run by tests/test_reliability.py in a subprocess, so that a
segfault fails that test instead of killing pytest.

    python tests/fuzz_kernels_child.py EXAMPLES

Hypothesis draws an op, a valid set of inputs (random shapes, odd sizes, stride/padding, both
dtypes, non-contiguous views) and, half the time, one mutation (wrong dtype, wrong shape, a
list instead of an array, a 0-size dim). Every call must either match tests/reference (within
support.TOL) or raise ValueError/TypeError; a valid call must not raise, and a changed dtype or
an empty array must be refused (a changed shape may still be valid: then it must be right). Prints
`cases N valid V refused R` and exits 0, or prints the failing case and exits 1.
"""
import os
import sys

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402
from support import TOL  # noqa: E402

from fastnn import ops  # noqa: E402

COUNTS = {"valid": 0, "refused": 0}


def noncontiguous(draw, a):
    """The same values, as a strided view of a bigger array, a transposed copy, or as is."""
    kind = draw(st.sampled_from(["as is", "strided", "fortran"]))
    if kind == "strided" and a.ndim:
        big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if kind == "fortran":
        return np.asfortranarray(a)
    return a


def dense_case(draw, rng, dtype):
    n, i, o = (draw(st.integers(1, 7)) for _ in range(3))
    x, w, b = rng.standard_normal((n, i)), rng.standard_normal((o, i)), rng.standard_normal(o)
    args = [a.astype(dtype) for a in (x, w, b)]
    return ops.dense_forward, reference.dense_forward, args, {}


def dense_backward_case(draw, rng, dtype):
    n, i, o = (draw(st.integers(1, 7)) for _ in range(3))
    args = [rng.standard_normal(s).astype(dtype) for s in ((n, o), (n, i), (o, i))]
    return ops.dense_backward, reference.dense_backward, args, {}


def conv_case(draw, rng, dtype):
    n, c, k = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    r, s = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride, padding = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    h, w = r + draw(st.integers(0, 5)), s + draw(st.integers(0, 5))
    args = [rng.standard_normal(sh).astype(dtype) for sh in ((n, c, h, w), (k, c, r, s), (k,))]
    kw = {"stride": stride, "padding": padding}
    return ops.conv2d_forward, reference.conv2d_forward, args, kw


def pool_case(draw, rng, dtype):
    kernel, stride = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), kernel + draw(st.integers(0, 5)),
             kernel + draw(st.integers(0, 5)))
    x = rng.permutation(np.prod(shape)).reshape(shape).astype(dtype)  # distinct: no ties
    return (ops.maxpool2d_forward, lambda x, kernel, stride: reference.maxpool2d_forward(
        x, (kernel, kernel), (stride, stride)), [x], {"kernel": kernel, "stride": stride})


def activation_case(draw, rng, dtype):
    name = draw(st.sampled_from(["relu", "sigmoid", "tanh"]))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)))
    return getattr(ops, name), getattr(reference, name), [rng.standard_normal(shape).astype(dtype)], {}


def softmax_ce_case(draw, rng, dtype):
    n, k = draw(st.integers(1, 7)), draw(st.integers(1, 6))
    logits = (rng.standard_normal((n, k)) * draw(st.sampled_from([1, 30]))).astype(dtype)
    return ops.softmax_cross_entropy, reference.softmax_cross_entropy, [logits, rng.integers(0, k, n)], {}


CASES = [dense_case, dense_backward_case, conv_case, pool_case, activation_case, softmax_ce_case]
MUTATIONS = ["dtype", "float16", "shape", "list", "empty", "mixed"]


def mutate(draw, rng, args):
    """One invalid change to one float argument; returns the new list."""
    args = list(args)
    floats = [j for j, a in enumerate(args) if a.dtype.kind == "f"]
    j = draw(st.sampled_from(floats))
    kind = draw(st.sampled_from(MUTATIONS))
    a = args[j]
    if kind == "dtype":
        args[j] = a.astype(np.int32)
    elif kind == "float16":
        args[j] = a.astype(np.float16)
    elif kind == "shape":
        axis = draw(st.integers(0, a.ndim))  # a.ndim: add a dim
        args[j] = a[..., None] if axis == a.ndim else np.concatenate([a, a.take([0], axis)], axis)
    elif kind == "list":
        args[j] = a.tolist()
    elif kind == "empty":
        args[j] = a[:0]
    else:  # float32 next to float64 (valid when it is the only float argument)
        args[j] = a.astype(np.float32 if a.dtype == np.float64 else np.float64)
        kind = "mixed" if len(floats) > 1 else "other float dtype"
    return args, kind


def close(got, want, dtype):
    if isinstance(want, tuple):
        return len(got) == len(want) and all(close(g, w, dtype) for g, w in zip(got, want))
    got, want = np.asarray(got), np.asarray(want)
    return got.shape == want.shape and np.allclose(got, want, **TOL[dtype])


@st.composite
def cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    op, oracle, args, kw = draw(st.sampled_from(CASES))(draw, rng, dtype)
    expected = oracle(*args, **kw)
    mutation = None
    if draw(st.booleans()):
        args, mutation = mutate(draw, rng, args)
    else:
        args = [noncontiguous(draw, a) if isinstance(a, np.ndarray) else a for a in args]
    return op, oracle, args, kw, expected, mutation, dtype


def main(examples):
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(cases())
    def check(case):
        op, oracle, args, kw, expected, mutation, dtype = case
        shapes = [(np.shape(a), getattr(a, "dtype", type(a).__name__)) for a in args]
        what = f"{op.__name__}{shapes} {kw} mutation={mutation}"
        try:
            got = op(*args, **kw)
        except (ValueError, TypeError) as exc:
            assert mutation is not None, f"valid call refused: {what}: {exc}"
            assert str(exc), f"empty message: {what}"
            COUNTS["refused"] += 1
            return
        if mutation in ("shape", "other float dtype"):  # an extra row can still be valid
            dtype = np.float32
            try:
                expected = oracle(*args, **kw)
            except (ValueError, IndexError) as exc:
                raise AssertionError(f"invalid call accepted: {what} (numpy: {exc})") from None
        else:
            assert mutation is None, f"invalid call accepted: {what}"
        assert close(got, expected, dtype), f"wrong answer: {what}"
        COUNTS["valid"] += 1

    check()
    print(f"cases {COUNTS['valid'] + COUNTS['refused']} valid {COUNTS['valid']} refused {COUNTS['refused']}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
