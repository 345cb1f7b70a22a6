"""Loss functions C(a, y) and their gradients dC/da, side by side.

``a`` is the network output of shape (B, D): the last layer's activation. For
``bce_with_logits`` and ``softmax_cross_entropy`` the last activation is the
identity, so ``a`` is the logits z. ``y`` has the shape of ``a``, except for
``softmax_cross_entropy`` where it holds integer classes of shape (B,).

The gradient is nabla_a C of BP1: delta^L = nabla_a C (.) sigma'(z^L).

| name                   | C                                      | source        |
|------------------------|----------------------------------------|---------------|
| sse                    | sum (a - y)^2                          | tutorial 000  |
| half_sse               | 1/2 sum (a - y)^2                      | tutorial 002  |
| mse                    | mean over B*D of (a - y)^2             | torch default |
| quadratic              | 1/(2B) sum_b ||a_b - y_b||^2           | tutorial 004  |
| binary_cross_entropy   | -mean[y log a + (1 - y) log(1 - a)]    | tutorial 001  |
| bce_with_logits        | the same with a = sigmoid(z), stable   | torch         |
| softmax_cross_entropy  | -1/B sum_b log softmax(z_b)[y_b]       | torch, optax  |
"""
import numpy as np


def sse(a, y):
    r = a - y
    return np.sum(r * r), 2 * r


def half_sse(a, y):
    r = a - y
    return 0.5 * np.sum(r * r), r


def mse(a, y):
    r = a - y
    return np.sum(r * r) / r.size, 2 * r / r.size


def quadratic(a, y):
    r = a - y
    batch = a.shape[0]
    return np.sum(r * r) / (2 * batch), r / batch


def binary_cross_entropy(a, y):
    n = a.size
    loss = -np.sum(y * np.log(a) + (1 - y) * np.log1p(-a)) / n
    return loss, (a - y) / (a * (1 - a)) / n  # times sigma'(z) = a(1-a) in BP1 gives (a-y)/n


def bce_with_logits(z, y):
    n = z.size
    # log(1 + e^{-|z|}) + max(z, 0) - z y  ==  -[y log s + (1-y) log(1-s)], s = sigmoid(z)
    loss = np.sum(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))) / n
    e = np.exp(-np.abs(z))
    s = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    return loss, (s - y) / n


def softmax_cross_entropy(z, y):
    batch = z.shape[0]
    rows = np.arange(batch)
    shifted = z - np.max(z, axis=1, keepdims=True)  # softmax is shift-invariant; exp <= 1
    e = np.exp(shifted)
    total = np.sum(e, axis=1, keepdims=True)
    loss = -np.sum(shifted[rows, y] - np.log(total[:, 0])) / batch
    grad = e / total  # softmax directly: exp(log_softmax) would add |shifted| u of error
    grad[rows, y] -= 1
    return loss, grad / batch


LOSSES = {
    "sse": sse,
    "half_sse": half_sse,
    "mse": mse,
    "quadratic": quadratic,
    "binary_cross_entropy": binary_cross_entropy,
    "bce_with_logits": bce_with_logits,
    "softmax_cross_entropy": softmax_cross_entropy,
}
