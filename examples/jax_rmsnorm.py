"""RMS norm as a jax.custom_vjp with a hand-written backward:

    bpcheck op rmsnorm --jax examples/jax_rmsnorm.py:rms_norm
"""
import jax
import jax.numpy as jnp


@jax.custom_vjp
def rms_norm(x, gamma, eps):
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * gamma


def _forward(x, gamma, eps):
    rstd = jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps)
    return x * rstd * gamma, (x * rstd, gamma, rstd)


def _backward(saved, dout):
    xhat, gamma, rstd = saved
    dxhat = dout * gamma
    dx = rstd * (dxhat - xhat * jnp.mean(dxhat * xhat, axis=-1, keepdims=True))
    return dx, jnp.sum(dout * xhat, axis=0), None


rms_norm.defvjp(_forward, _backward)
