"""Correct: the network written as a pure function of (params, x) in jax.numpy and differentiated by
jax.value_and_grad, jit-compiled per architecture, in the case dtype. Deltas are the gradients with respect to
a zero added to each pre-activation. float64 needs JAX's x64 mode, switched on at import.
"""
import functools

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

EXPECTED = {
    "verdict": "pass",
    "class": None,
    "first_wrong": None,
    "equation": None,
    "family": None,
    "shows_when": None,
}

ACTIVATIONS = {
    "identity": lambda z: z,
    "relu": jax.nn.relu,
    "leaky_relu": lambda z: jnp.where(z > 0, z, 0.01 * z),  # slope 0.01 at 0, like the contract
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
    "elu": jax.nn.elu,
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),
    "gelu_tanh": lambda z: jax.nn.gelu(z, approximate=True),
    "silu": jax.nn.silu,
}


def loss_fn(name, z, a, y):
    B = a.shape[0]
    if name == "sse":
        return jnp.sum((a - y) ** 2)
    if name == "half_sse":
        return 0.5 * jnp.sum((a - y) ** 2)
    if name == "mse":
        return jnp.mean((a - y) ** 2)
    if name == "quadratic":
        return jnp.sum((a - y) ** 2) / (2 * B)
    if name in ("binary_cross_entropy", "bce_with_logits"):  # from the last pre-activation
        return -jnp.mean(y * jax.nn.log_sigmoid(z) + (1 - y) * jax.nn.log_sigmoid(-z))
    if name == "softmax_cross_entropy":
        logp = jax.nn.log_softmax(z, axis=1)
        return -jnp.sum(logp[jnp.arange(B), y]) / B
    raise NotImplementedError(name)


@functools.lru_cache(maxsize=64)
def compiled(loss_name, activations):
    """value_and_grad of the whole network for one architecture, jit-compiled once per shape."""
    def net(p, x, y, eps):
        zs, acts, a = [], [], x
        for i, name in enumerate(activations):
            z = a @ p[f"layers.{i}.W"].T + p[f"layers.{i}.b"] + eps[i]
            a = ACTIVATIONS[name](z)
            zs.append(z)
            acts.append(a)
        return loss_fn(loss_name, zs[-1], acts[-1], y), (zs, acts)

    return jax.jit(jax.value_and_grad(net, argnums=(0, 1, 3), has_aux=True))


def backprop(spec, params, x, y):
    dt = np.dtype(spec["dtype"])
    layers = spec["layers"]
    for layer in layers:
        if layer["activation"] not in ACTIVATIONS:
            raise NotImplementedError(layer["activation"])
    if spec["loss"] == "softmax_cross_entropy":
        y = jnp.asarray(np.asarray(y, np.int64))
    else:
        y = jnp.asarray(np.asarray(y, dt))
    x = jnp.asarray(np.asarray(x, dt))
    p = {k: jnp.asarray(np.asarray(v, dt)) for k, v in params.items()}
    eps = [jnp.zeros((x.shape[0], layer["units"]), dt) for layer in layers]

    fn = compiled(spec["loss"], tuple(layer["activation"] for layer in layers))
    (loss, (zs, acts)), (g_p, g_x, g_eps) = fn(p, x, y, eps)
    names = [f"layers.{i}" for i in range(len(layers))]
    arr = np.asarray
    return {"loss": float(loss), "grads": {k: arr(v) for k, v in g_p.items()}, "input_grad": arr(g_x),
            "deltas": {n: arr(d) for n, d in zip(names, g_eps)},
            "activations": {n: arr(a) for n, a in zip(names, acts)},
            "pre_activations": {n: arr(z) for n, z in zip(names, zs)}}
