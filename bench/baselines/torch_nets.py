"""The same networks in PyTorch (CPU, float32), written the idiomatic way: nn.Sequential,
torch.optim.SGD with its defaults, autograd, `torch.inference_mode()` for prediction.

Import this module only where torch is installed (a benchmark venv): torch is never a fastnn
dependency.
"""
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class Net:
    """Built from `baselines.spec_of(model)` and fastnn's weights (copied)."""

    def __init__(self, spec, weights):
        mods, channels, features = [], spec["input_shape"][0], spec["input_shape"][0]
        for layer in spec["layers"]:
            kind = layer["kind"]
            if kind == "Dense":
                mods.append(nn.Linear(features, layer["units"]))
                features = layer["units"]
                if layer["activation"]:
                    mods.append(ACTIVATIONS[layer["activation"]]())
            elif kind == "Conv2D":
                mods.append(nn.Conv2d(channels, layer["filters"], tuple(layer["kernel_size"]),
                                      tuple(layer["stride"]), tuple(layer["padding"])))
                channels = layer["filters"]
            elif kind == "MaxPool2D":
                mods.append(nn.MaxPool2d(tuple(layer["pool_size"]), tuple(layer["stride"])))
            elif kind in ("ReLU", "Sigmoid", "Tanh"):
                mods.append(ACTIVATIONS[kind.lower()]())
            elif kind == "Flatten":
                mods.append(nn.Flatten())
                features = int(np.prod(layer["output_shape"]))
            else:
                raise ValueError(f"torch baseline: no layer {kind!r}")
        self.net = nn.Sequential(*mods)
        params = list(self.net.parameters())  # weight, bias per layer, in fastnn's order
        if len(params) != len(weights):
            raise ValueError(f"torch baseline: {len(params)} parameters but {len(weights)} weights")
        with torch.no_grad():
            for p, w in zip(params, weights):
                p.copy_(torch.from_numpy(np.asarray(w, dtype=np.float32)))
        self.opt = torch.optim.SGD(self.net.parameters(), lr=spec["lr"], momentum=spec["momentum"])
        self.mse = spec["loss"] == "MSE"

    def _loss(self, out, y):
        if self.mse:  # mean over the batch of 0.5 * ||out - one_hot||^2, as fastnn's MSE
            target = F.one_hot(y, out.shape[1]).to(out.dtype)
            return F.mse_loss(out, target, reduction="sum") * (0.5 / len(out))
        return F.cross_entropy(out, y)

    def train_step(self, x, y):
        self.opt.zero_grad(set_to_none=True)
        loss = self._loss(self.net(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        self.opt.step()
        return loss.item()

    def loss_and_gradients(self, x, y):
        """Batch loss; gradients as numpy arrays in fastnn's parameter order."""
        self.opt.zero_grad(set_to_none=True)
        loss = self._loss(self.net(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        return loss.item(), [p.grad.numpy().copy() for p in self.net.parameters()]

    def predict(self, x):
        with torch.inference_mode():
            return self.net(torch.from_numpy(x)).numpy()

    def parameters(self):
        return [p.detach().numpy() for p in self.net.parameters()]


def conv2d_step(x, w, b, dy, stride, padding, need_dx):
    """One conv2d forward + backward (autograd), as inside a LeNet training step."""
    x.requires_grad_(need_dx)
    y = F.conv2d(x, w, b, stride, padding)
    y.backward(dy)
    w.grad = b.grad = x.grad = None


def maxpool2d_step(x, dy, pool, stride):
    """One max-pool forward + backward (autograd)."""
    y = F.max_pool2d(x, pool, stride)
    y.backward(dy)
    x.grad = None


def tensors(*arrays, grad=True):
    """torch leaf tensors sharing the numpy arrays' memory, requiring grad."""
    return [torch.from_numpy(a).requires_grad_(grad) for a in arrays]
