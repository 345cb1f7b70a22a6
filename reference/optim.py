"""Gradient descent and its common optimizers, one step at a time (tutorials 002 and 003: w <- w - alpha grad).

Every function has the training contract of ``bpcheck train``:

    step(params, grads, state, hyper) -> (params, state)

``params`` and ``grads`` are dicts of arrays by name (each kept in its dtype: hyper-parameters are Python
floats, which NumPy never promotes a float32 array with), ``state`` what the previous call returned (None
at the first step), ``hyper`` the hyper-parameters. Nothing is changed in place. The equations are
PyTorch's (torch.optim's documented pseudocode), as the docstrings say.
"""
import numpy as np

__all__ = ["sgd_step", "descend", "sgd", "momentum", "nesterov", "adam", "adamw", "clip_sgd"]


def sgd_step(params, grads, lr):
    """Return new parameters; each keeps its dtype (``lr`` is a Python float, never promoted)."""
    return {name: p - float(lr) * grads[name] for name, p in params.items()}


def descend(gradient, x, step, precision, max_steps=100_000):
    """Tutorial 002's loop: x <- x - step * gradient(x) until one move is at most ``precision``.

    ``gradient`` maps x to dC/dx (tutorial 002's df(x) = 4 x^3 - 9 x^2); returns (x, the number of moves).
    Raises RuntimeError if it has not settled after ``max_steps`` moves or runs out of range (a step too
    large diverges)."""
    for moves in range(1, max_steps + 1):
        try:
            new = x - step * gradient(x)
        except OverflowError:
            raise RuntimeError(f"no convergence: diverged past the float range after {moves} moves") from None
        if abs(new - x) <= precision:
            return new, moves
        x = new
    raise RuntimeError(f"no convergence in {max_steps} moves (last x = {x})")


def _l2(p, g, hyper):
    """g + lambda p: L2 regularisation in the gradient (weight_decay), or g."""
    decay = float(hyper.get("weight_decay", 0.0))
    return g + decay * p if decay else g


def sgd(params, grads, state, hyper):
    """p <- p - lr (g + lambda p)."""
    return {k: p - float(hyper["lr"]) * _l2(p, grads[k], hyper) for k, p in params.items()}, state


def _velocity(params, grads, state, hyper):
    """v <- mu v + g (v = g at the first step), with g the L2-regularised gradient."""
    state = state or {}
    mu = float(hyper["mu"])
    return {k: _l2(p, grads[k], hyper) + (mu * state[k] if k in state else 0) for k, p in params.items()}


def momentum(params, grads, state, hyper):
    """v <- mu v + g, p <- p - lr v (torch.optim.SGD with momentum, dampening 0)."""
    v = _velocity(params, grads, state, hyper)
    return {k: p - float(hyper["lr"]) * v[k] for k, p in params.items()}, v


def nesterov(params, grads, state, hyper):
    """v <- mu v + g, p <- p - lr (g + mu v) (torch.optim.SGD with nesterov=True)."""
    v = _velocity(params, grads, state, hyper)
    mu, lr = float(hyper["mu"]), float(hyper["lr"])
    return {k: p - lr * (_l2(p, grads[k], hyper) + mu * v[k]) for k, p in params.items()}, v


def _adam(params, grads, state, hyper, decoupled):
    state = state or {"t": 0, "m": {}, "v": {}}
    t = state["t"] + 1
    b1, b2, lr, eps = (float(hyper[k]) for k in ("b1", "b2", "lr", "eps"))
    out, m, v = {}, {}, {}
    for k, p in params.items():
        if decoupled:
            p = p * (1 - lr * float(hyper["weight_decay"]))          # decoupled decay first
        g = grads[k] if decoupled else _l2(p, grads[k], hyper)
        m[k] = b1 * state["m"][k] + (1 - b1) * g if k in state["m"] else (1 - b1) * g
        v[k] = b2 * state["v"][k] + (1 - b2) * g * g if k in state["v"] else (1 - b2) * g * g
        m_hat = m[k] / (1 - b1 ** t)                                   # bias corrections
        v_hat = v[k] / (1 - b2 ** t)
        out[k] = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return out, {"t": t, "m": m, "v": v}


def adam(params, grads, state, hyper):
    """m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2, p <- p - lr m^ / (sqrt(v^) + eps) with the bias
    corrections m^ = m / (1 - b1^t), v^ = v / (1 - b2^t) (Kingma & Ba 2015, Algorithm 1)."""
    return _adam(params, grads, state, hyper, decoupled=False)


def adamw(params, grads, state, hyper):
    """p <- p (1 - lr lambda), then Adam's step (torch.optim.AdamW)."""
    return _adam(params, grads, state, hyper, decoupled=True)


def clip_sgd(params, grads, state, hyper):
    """g <- g min(1, c / ||g||) with ||g|| over every gradient together, then p <- p - lr g."""
    norm = np.sqrt(sum(float(np.sum(np.asarray(g, dtype=np.float64) ** 2)) for g in grads.values()))
    scale = min(1.0, float(hyper["clip"]) / norm) if norm > 0 else 1.0
    return {k: p - float(hyper["lr"]) * (grads[k] * scale if scale < 1 else grads[k])
            for k, p in params.items()}, state
