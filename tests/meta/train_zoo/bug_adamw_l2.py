"""AdamW written as Adam with L2 in the gradient: the decay goes through the adaptive scaling (Loshchilov &
Hutter's point: that is not weight decay)."""
from reference.optim import adam

EXPECTED = {"optimizer": "adamw", "hyper": {"weight_decay": 0.1}, "step": 1, "hint": "L2 in the gradient"}


def step(params, grads, state, hyper):
    return adam(params, grads, state, hyper)
