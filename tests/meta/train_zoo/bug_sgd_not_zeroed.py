"""Gradients never zeroed: each step adds the new gradient to the ones before (a forgotten
optimizer.zero_grad(), or a grad buffer with +=), so step k descends along g_1 + ... + g_k."""
EXPECTED = {"optimizer": "sgd", "hyper": {}, "step": 2, "hint": "gradients accumulate across steps"}


def step(params, grads, state, hyper):
    total = {k: g + state[k] for k, g in grads.items()} if state else dict(grads)
    return {k: p - float(hyper["lr"]) * total[k] for k, p in params.items()}, total
