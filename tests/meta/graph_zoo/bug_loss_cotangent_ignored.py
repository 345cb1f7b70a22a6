"""A network whose backward starts from the loss's own gradient and ignores the upstream cotangent: right
when training sends 1, wrong for any other dout (a loss scaled, weighted, or summed into another)."""
import numpy as np

from reference.networks import residual_mlp

EXPECTED = {"arch": "residual_mlp", "node": "loss", "tensor": "loss: dx", "graph_tensor": "delta fc3",
            "words": "the output's cotangent is ignored"}


def net(values, constants, hyper, dout):
    loss, g, d, outputs = residual_mlp(values, constants, hyper, np.ones_like(dout))   # the bug: dout never used
    d["loss"] = np.asarray(dout)
    return loss, g, d, outputs
