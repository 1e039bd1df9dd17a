"""The peers fastnn is compared with, on the same math: PyTorch (CPU, float32) and a plain
vectorized numpy implementation (the from-scratch baseline our users come from).

Each `make_*` takes a built fastnn preset model and returns a `step(x, y)` that trains one batch
with the same architecture, loss, optimizer and initial weights, and a `predict(x)`.
"""
import numpy as np

ACT = {"relu": lambda z: np.maximum(z, 0, out=z),
       "sigmoid": lambda z: np.divide(1, 1 + np.exp(-z, out=z), out=z)}
SLOPE = {"relu": lambda a: a > 0, "sigmoid": lambda a: a * (1 - a)}


def _dense_stack(model):
    """[(w, b, activation)] copies of a fastnn model made only of Dense layers."""
    layers = [(l.params["w"].copy(), l.params["b"].copy(), l.activation) for l in model.layers]
    if any(type(l).__name__ != "Dense" for l in model.layers):
        raise ValueError("numpy baseline: Dense-only models")
    return layers


def make_numpy(model):
    """A from-scratch numpy MLP with fastnn's weights: softmax-CE or MSE on labels, plain SGD."""
    layers = _dense_stack(model)
    lr = model.optimizer.lr
    mse = type(model.loss).__name__ == "MSE"

    def forward(x):
        acts = [x]
        for w, b, act in layers:
            z = acts[-1] @ w.T + b
            acts.append(ACT[act](z) if act else z)
        return acts

    def step(x, y):
        acts = forward(x)
        out, n = acts[-1], len(x)
        if mse:
            d = out.copy()
            d[np.arange(n), y] -= 1
            d /= n
        else:
            e = np.exp(out - out.max(axis=1, keepdims=True))
            d = e / e.sum(axis=1, keepdims=True)
            d[np.arange(n), y] -= 1
            d /= n
        for i in range(len(layers) - 1, -1, -1):
            w, b, act = layers[i]
            if act:
                d = d * SLOPE[act](acts[i + 1])
            dw, db = d.T @ acts[i], d.sum(axis=0)
            if i:
                d = d @ w
            w -= lr * dw
            b -= lr * db

    return step, lambda x: forward(x)[-1]


def make_torch(model):
    """The same network in PyTorch, initial weights copied from the fastnn model."""
    import torch
    from torch import nn
    mods = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Dense":
            lin = nn.Linear(layer.input_shape[0], layer.units)
            mods.append(lin)
            if layer.activation:
                mods.append({"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[layer.activation]())
        elif kind == "Conv2D":
            mods.append(nn.Conv2d(layer.input_shape[0], layer.filters, layer.kernel_size,
                                  layer.stride, layer.padding))
        elif kind == "MaxPool2D":
            mods.append(nn.MaxPool2d(layer.pool_size, layer.stride))
        elif kind == "ReLU":
            mods.append(nn.ReLU())
        elif kind == "Sigmoid":
            mods.append(nn.Sigmoid())
        elif kind == "Flatten":
            mods.append(nn.Flatten())
        else:
            raise ValueError(f"torch baseline: no {kind}")
    net = nn.Sequential(*mods)
    with torch.no_grad():
        params = [m for m in net if isinstance(m, (nn.Linear, nn.Conv2d))]
        for m, layer in zip(params, [l for l in model.layers if l.param_shapes]):
            m.weight.copy_(torch.from_numpy(layer.params["w"]))
            m.bias.copy_(torch.from_numpy(layer.params["b"]))
    opt = torch.optim.SGD(net.parameters(), lr=model.optimizer.lr, momentum=model.optimizer.momentum)
    mse = type(model.loss).__name__ == "MSE"

    def step(x, y):
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        opt.zero_grad(set_to_none=True)
        out = net(xt)
        if mse:
            loss = 0.5 * ((out - nn.functional.one_hot(yt, out.shape[1]).float()) ** 2).sum() / len(x)
        else:
            loss = nn.functional.cross_entropy(out, yt)
        loss.backward()
        opt.step()

    def predict(x):
        with torch.no_grad():
            return net(torch.from_numpy(x)).numpy()

    return step, predict
