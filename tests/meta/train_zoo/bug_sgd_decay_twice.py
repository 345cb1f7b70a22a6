"""L2 regularisation in both places (Nielsen's network2.py folds (1 - eta lambda / n) into the update; this
also adds lambda w to the gradient): the decay is applied twice."""
from reference.optim import _l2

EXPECTED = {"optimizer": "sgd", "hyper": {"weight_decay": 0.05}, "step": 1, "hint": "L2 applied twice"}


def step(params, grads, state, hyper):
    lr, decay = float(hyper["lr"]), float(hyper["weight_decay"])
    return {k: p * (1 - lr * decay) - lr * _l2(p, grads[k], hyper) for k, p in params.items()}, state
