"""fastnn.gradcheck: analytic gradients of a model against central finite differences."""
import numpy as np


def gradcheck(model, x, y, eps=1e-6, max_checks_per_param=None, seed=0):
    """Compare backprop with central differences for every parameter, in float64.

    Works on a float64 copy, so `model` is untouched. With `max_checks_per_param` only that many
    randomly chosen entries of each parameter array are checked (all by default). Returns
    {'max_rel_error': worst, 'per_param': {'<layer index>.<ClassName>.<name>': worst, ...}},
    with relative error |a - n| / max(|a|, |n|, 1e-3 * g, 1e-8), g the largest analytic gradient
    of that parameter array: entries a thousand times smaller than their array's largest are
    judged on that scale, since central differences cannot resolve them relatively.
    """
    if model.loss is None:
        raise RuntimeError("gradcheck: the model needs a loss")
    model64 = model.copy(dtype=np.float64)
    if model64.input_shape is None:
        model64.build(x.shape[1:])
    model64._check_data("gradcheck", x, y)
    x = np.ascontiguousarray(x, dtype=np.float64)
    loss = lambda: model64.loss(model64.forward(x, training=True), y)  # noqa: E731

    loss()
    model64.backward()
    analytic = model64.grads.copy()
    rng = np.random.default_rng(seed)
    per_param, offset = {}, 0
    for i, layer in enumerate(model64.layers):
        for name, shape in layer.param_shapes.items():
            size = int(np.prod(shape))
            picks = np.arange(size)
            if max_checks_per_param is not None and size > max_checks_per_param:
                picks = rng.choice(size, max_checks_per_param, replace=False)
            worst = 0.0
            scale = max(1e-3 * float(np.max(np.abs(analytic[offset:offset + size]))), 1e-8)
            for k in offset + picks:
                old = model64.params[k]
                model64.params[k] = old + eps
                plus = loss()
                model64.params[k] = old - eps
                minus = loss()
                model64.params[k] = old
                numeric = (plus - minus) / (2 * eps)
                a = analytic[k]
                worst = max(worst, float(abs(a - numeric) / max(abs(a), abs(numeric), scale)))
            per_param[f"{i}.{type(layer).__name__}.{name}"] = worst
            offset += size
    return {"max_rel_error": max(per_param.values(), default=0.0), "per_param": per_param}
