"""One step of gradient descent: w <- w - eta * dC/dw (tutorial 002, 003)."""


def sgd_step(params, grads, lr):
    """Return new parameters; each keeps its dtype (``lr`` is a Python float, never promoted)."""
    return {name: p - float(lr) * grads[name] for name, p in params.items()}
