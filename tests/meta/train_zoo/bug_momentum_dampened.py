"""Momentum written as an exponential average, v <- mu v + (1 - mu) g, where torch's SGD momentum sums
(dampening 0): every step is (1 - mu) times too short."""
EXPECTED = {"optimizer": "momentum", "hyper": {}, "step": 1, "hint": "an exponential average"}


def step(params, grads, state, hyper):
    mu, lr = float(hyper["mu"]), float(hyper["lr"])
    v = {k: mu * state[k] + (1 - mu) * g if state else (1 - mu) * g for k, g in grads.items()}
    return {k: p - lr * v[k] for k, p in params.items()}, v
