"""The whole-network oracle (reference/net.py) checked by central differences, so that the
composition tests compare fastnn against something known to be right. No fastnn code runs here:
parameters are drawn from the oracle's own shapes."""
import numpy as np
import pytest
from hypothesis import assume, given

import networks as nw
import reference as ref
from networks import Case


def _loss_at(case, flat, x, y):
    """Scalar loss of the oracle at flat parameters `flat` (read at call time) and input x."""
    return lambda: ref.net_loss(case.loss, ref.net_forward(
        case.spec, ref.split_params(case.spec, case.input_shape, flat), x)[0], y)[0]


def check_against_central_differences(case, checks=None):
    """Analytic parameter and input gradients of the oracle against central differences, at up to
    `checks` random entries of each (all by default). Returns False, having checked nothing, when
    the draw lies too close to a kink for eps = 1e-6 steps to stay on one side of it."""
    rng = np.random.default_rng(case.seed)
    x, y = nw.make_data(case)
    x = x.astype(np.float64)
    size = sum(int(np.prod(s)) for shapes in ref.param_shapes(case.spec, case.input_shape)
               for s in shapes.values())
    flat = rng.standard_normal(size) * 0.5
    params = ref.split_params(case.spec, case.input_shape, flat)
    output, cache = ref.net_forward(case.spec, params, x)
    if cache["margin"] <= 1e-4:
        return False
    loss, dout = ref.net_loss(case.loss, output, y)
    grads, dx = ref.net_backward(case.spec, params, cache, dout)
    # gradient_bound bounds every gradient (each activation derivative is at most 1).
    bound = ref.join_params(ref.gradient_bound(case.spec, params, cache, dout))
    assert np.all(np.abs(ref.join_params(grads)) <= bound * (1 + 1e-12)), case
    for analytic, a in ((ref.join_params(grads), flat), (dx.reshape(-1), x.reshape(-1))):
        picks = None if checks is None or a.size <= checks else rng.choice(a.size, checks, replace=False)
        numeric = ref.numeric_grad(_loss_at(case, flat, x, y), a, indices=picks)
        want = analytic if picks is None else analytic[picks]
        # Central differences: O(eps^2) truncation, plus rounding of about 1e-16 * loss / eps.
        allowed = 1e-6 * float(np.max(np.abs(analytic), initial=0.0)) + 1e-9 * max(1.0, abs(loss))
        assert np.max(np.abs(numeric - want), initial=0.0) <= allowed, case
    return True


@nw.normal(40)
@given(nw.cases(dtypes=(np.float64,), max_body=5, wide=False))
def test_reference_gradients_equal_central_differences(case):
    assume(check_against_central_differences(case, checks=12))


@pytest.mark.parametrize("loss,targets", nw.LOSS_TARGETS)
def test_reference_every_layer_kind_by_central_differences(loss, targets):
    """One network with every layer kind (strided padded conv, overlapping pool, unpool by index,
    activations before and after Flatten, fused and unfused Dense), every parameter checked."""
    spec = (("conv", 2, (3, 2), (2, 1), (1, 1)), ("relu",), ("pool", (2, 2), (1, 1)), ("tanh",),
            ("unpool", 2), ("sigmoid",), ("pool", (2, 2), (2, 2)), ("flatten",), ("relu",),
            ("dense", 3, "tanh"), ("sigmoid",), ("dense", 1 if loss == "bce" else 3, None))
    assert check_against_central_differences(Case(spec, (2, 5, 4), loss, targets, np.dtype(np.float64), 3, 7))


def test_reference_shapes_follow_the_layers():
    spec = (("conv", 3, (3, 3), (2, 2), (1, 0)), ("pool", (2, 1), (1, 1)), ("unpool", 1),
            ("flatten",), ("dense", 4, "relu"))
    assert ref.output_shapes(spec, (2, 7, 6)) == [(3, 4, 2), (3, 3, 2), (3, 4, 2), (24,), (4,)]
    assert ref.param_shapes(spec, (2, 7, 6))[0] == {"w": (3, 2, 3, 3), "b": (3,)}
    with pytest.raises(ValueError, match="parameters"):
        ref.split_params(spec, (2, 7, 6), np.zeros(5))
