"""The frameworks' own gradient checkers around code that computes a forward and a backward in NumPy.

``gradcheck_fn``: ``torch.autograd.gradcheck`` at its defaults (eps 1e-6, atol 1e-5, rtol 1e-3), through
a ``torch.autograd.Function`` whose forward and backward call the NumPy code on the tensors' values.
``check_grads_fn``: ``jax.test_util.check_grads(f, args, order=1, modes=["rev"])`` at its defaults,
through a ``jax.custom_vjp`` whose primal and VJP call the NumPy code with ``jax.pure_callback``. Both
return ("p" | "f" | "e", message): passed, failed, raised. The op and graph baselines run them beside
bpcheck (``bpcheck.opcheck.baselines``, ``bpcheck.opcheck.graph_baselines``).
"""
import warnings

import numpy as np

__all__ = ["gradcheck_fn", "check_grads_fn", "enable_x64", "describe"]


def describe(exc):
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"


def gradcheck_fn(names, forward, backward, inputs, dtype):
    """("p" | "f" | "e", message): ``torch.autograd.gradcheck`` at its defaults on ``inputs`` ({name: array}),
    through a ``torch.autograd.Function`` whose forward is ``forward(arrays) -> (out, state)`` and whose
    backward is ``backward(dout, state) -> {name: gradient or None}`` (NumPy, in ``dtype``)."""
    import torch
    dtype = np.dtype(dtype)

    class Layer(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            out, ctx.state = forward([t.detach().numpy() for t in tensors])
            return torch.from_numpy(np.array(out, dtype))

        @staticmethod
        def backward(ctx, grad_output):
            grads = backward(grad_output.detach().numpy().copy(), ctx.state)
            return tuple(None if grads.get(k) is None else torch.from_numpy(np.array(grads[k], dtype)) for k in names)

    tensors = tuple(torch.from_numpy(np.array(inputs[k])).requires_grad_(True) for k in names)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")      # "not double precision": the float32 runs are on purpose
            ok = torch.autograd.gradcheck(Layer.apply, tensors, raise_exception=False)
        return ("p" if ok else "f"), None
    except Exception as exc:
        return "e", describe(exc)


def enable_x64():
    import jax
    jax.config.update("jax_enable_x64", True)     # before any array is made: float64 stays float64
    return jax


def check_grads_fn(names, forward, backward, inputs, dtype, out_shape):
    """("p" | "f" | "e", message): ``jax.test_util.check_grads(order=1, modes=["rev"])`` at its defaults on
    ``inputs`` ({name: array}), through a ``jax.custom_vjp`` whose primal (output of shape ``out_shape``) and
    VJP call ``forward`` and ``backward`` (as in ``gradcheck_fn``) with ``jax.pure_callback``; the VJP re-runs
    the forward on its residuals, the inputs."""
    jax = enable_x64()
    import jax.numpy as jnp
    from jax.test_util import check_grads
    dtype = np.dtype(dtype)
    out_shape = jax.ShapeDtypeStruct(tuple(out_shape), dtype)
    in_shapes = tuple(jax.ShapeDtypeStruct(np.shape(inputs[k]), dtype) for k in names)

    def primal(*arrays):
        with np.errstate(all="ignore"):
            return np.array(forward(arrays)[0], dtype)

    def vjp(dout, *arrays):
        with np.errstate(all="ignore"):
            grads = backward(np.array(dout, dtype), forward(arrays)[1])
            return tuple(np.zeros(np.shape(inputs[k]), dtype) if grads.get(k) is None else np.array(grads[k], dtype)
                         for k in names)

    @jax.custom_vjp
    def f(*xs):
        return jax.pure_callback(primal, out_shape, *xs)

    f.defvjp(lambda *xs: (jax.pure_callback(primal, out_shape, *xs), xs),
             lambda xs, g: jax.pure_callback(vjp, in_shapes, g, *xs))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_grads(f, tuple(jnp.asarray(inputs[k]) for k in names), order=1, modes=["rev"])
        return "p", None
    except AssertionError as exc:
        return "f", describe(exc)
    except Exception as exc:
        return "e", describe(exc)
