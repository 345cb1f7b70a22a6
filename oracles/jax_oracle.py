"""JAX grad oracle: the contract's network built from jax.nn and optax losses.

float64 is enabled on import (``jax_enable_x64``), before any array is made.

Conventions normalised to the contract (everything else is JAX's default):
- gelu is jax.nn.gelu(approximate=False); jax's *default* is the tanh form,
  which is our gelu_tanh (jax.nn.gelu(approximate=True)).
- leaky_relu: jax.nn.leaky_relu uses ``where(z >= 0, ...)`` so its derivative
  at 0 is 1; the contract says 0.01, so this module uses ``where(z > 0, ...)``
  with the same slope 0.01.
- relu'(0) = 0 in jax already (custom JVP).
- binary_cross_entropy on probabilities has no optax built-in; it is written
  against the contract, -mean[y log a + (1 - y) log1p(-a)], with no clamping.
- sse = 2 sum(optax.l2_loss), half_sse = sum(optax.l2_loss) (l2_loss is
  1/2 (a - y)^2), mse = mean(optax.squared_error), quadratic =
  sum(optax.squared_error) / (2B); bce_with_logits and softmax_cross_entropy
  are optax.sigmoid_binary_cross_entropy and
  optax.softmax_cross_entropy_with_integer_labels, averaged over all entries.
Deltas dC/dz_i are gradients with respect to a zero added to each z_i.
Compiled functions are cached per (architecture, loss, shapes, dtype).
"""
import functools

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

ACTIVATIONS = {
    "identity": lambda z: z,
    "relu": jax.nn.relu,
    "leaky_relu": lambda z: jnp.where(z > 0, z, 0.01 * z),
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
    "elu": jax.nn.elu,
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),
    "gelu_tanh": lambda z: jax.nn.gelu(z, approximate=True),
    "silu": jax.nn.silu,
}

LOSSES = {
    "sse": lambda a, y: 2 * jnp.sum(optax.l2_loss(a, y)),
    "half_sse": lambda a, y: jnp.sum(optax.l2_loss(a, y)),
    "mse": lambda a, y: jnp.mean(optax.squared_error(a, y)),
    "quadratic": lambda a, y: jnp.sum(optax.squared_error(a, y)) / (2 * a.shape[0]),
    "binary_cross_entropy": lambda a, y: -jnp.mean(y * jnp.log(a) + (1 - y) * jnp.log1p(-a)),
    "bce_with_logits": lambda z, y: jnp.mean(optax.sigmoid_binary_cross_entropy(z, y)),
    "softmax_cross_entropy": lambda z, y: jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(z, y)
    ),
}


@functools.lru_cache(maxsize=None)
def _compiled(activations, loss_name):
    def loss_fn(params, x, y, zeros):
        a = x
        zs, acts = [], []
        for i, name in enumerate(activations):
            z = a @ params[f"layers.{i}.W"].T + params[f"layers.{i}.b"] + zeros[i]
            a = ACTIVATIONS[name](z)
            zs.append(z)
            acts.append(a)
        return LOSSES[loss_name](a, y), (zs, acts)

    grad = jax.value_and_grad(loss_fn, argnums=(0, 1, 3), has_aux=True)
    return jax.jit(grad)


def backprop(spec, params, x, y):
    dtype = np.dtype(spec["dtype"])
    p = {k: jnp.asarray(np.asarray(v, dtype=dtype)) for k, v in params.items()}
    x_j = jnp.asarray(np.asarray(x, dtype=dtype))
    if spec["loss"] == "softmax_cross_entropy":
        y_j = jnp.asarray(np.asarray(y, dtype=np.int64))
    else:
        y_j = jnp.asarray(np.asarray(y, dtype=dtype))
    batch = x_j.shape[0]
    zeros = [jnp.zeros((batch, layer["units"]), dtype=dtype) for layer in spec["layers"]]
    activations = tuple(layer["activation"] for layer in spec["layers"])
    (loss, (zs, acts)), (g_params, g_x, g_zeros) = _compiled(activations, spec["loss"])(
        p, x_j, y_j, zeros
    )
    names = [f"layers.{i}" for i in range(len(zs))]
    numpy = lambda t: np.array(t, dtype=dtype)
    return {
        "loss": float(loss),
        "grads": {k: numpy(v) for k, v in g_params.items()},
        "input_grad": numpy(g_x),
        "pre_activations": {n: numpy(z) for n, z in zip(names, zs)},
        "activations": {n: numpy(a) for n, a in zip(names, acts)},
        "deltas": {n: numpy(d) for n, d in zip(names, g_zeros)},
    }
