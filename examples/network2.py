"""Nielsen's network2.py update, in bpcheck's step contract: L2-regularised SGD written his way.

Neural Networks and Deep Learning, chapter 3, ``Network.update_mini_batch``:

    w -> (1 - eta lambda / n) w - (eta / m) sum_x grad C_x,     b -> b - (eta / m) sum_x grad C_x

The weight decay sits in the update as a factor on w (Nielsen rescales every weight, biases included
here, and bpcheck's gradient is already the mean over the batch, so eta / m is folded into it). That is
the same number as SGD with L2 in the gradient, w - eta (grad + lambda' w) with lambda' = lambda / n:
bpcheck's ``sgd`` with ``weight_decay`` lambda'. Check it:

    bpcheck train residual_mlp --optimizer sgd --hyper weight_decay=0.01 --step examples/network2.py:step
"""

__all__ = ["step"]


def step(params, grads, state, hyper):
    eta, decay = float(hyper["lr"]), float(hyper["weight_decay"])
    return {name: (1 - eta * decay) * w - eta * grads[name] for name, w in params.items()}, state
