"""A residual block whose backward assigns the skip's gradient to dx instead of adding it: dx = d(skip)
overwrites the gradient that came through fc1 (the `=` for `+=` of micrograd's early version)."""
from reference.networks import residual_mlp

EXPECTED = {"arch": "residual_mlp", "node": "x", "tensor": "dx (sum of 2 parts)", "graph_tensor": "dx", "words": "assigned with = instead of accumulated with +="}


def net(values, constants, hyper, dout):
    loss, g, d, outputs = residual_mlp(values, constants, hyper, dout)
    g["x"] = d["skip"]                       # the bug: the part through fc1 is lost
    return loss, g, d, outputs
