"""A minimal, readable NumPy multilayer perceptron with hand-written backprop.

This package is the thing bpcheck checks first; it imports neither torch, jax
nor bpcheck, and is validated through the same adapter path as anyone else's
code (`reference.network:backprop`).
"""
from reference.network import backprop, backward, forward
from reference.optim import sgd_step

__all__ = ["backprop", "backward", "forward", "sgd_step"]
