"""A convnet whose backward forgets the relu after batch norm: batch norm's backward gets the pool's
gradient unmasked, d(bn) = d(relu1)."""
from reference.layers import (affine_backward, affine_forward, conv_backward_naive, conv_forward_naive,
                              max_pool_backward_naive, max_pool_forward_naive, softmax_loss,
                              spatial_batchnorm_backward, spatial_batchnorm_forward)
import numpy as np

EXPECTED = {"arch": "cnn", "node": "relu1", "tensor": "relu1: dx", "graph_tensor": "delta bn", "words": "relu1"}


def net(values, constants, hyper, dout):
    v, h = values, hyper
    conv, cc = conv_forward_naive(v["x"], v["W1"], v["b1"], {"stride": h["conv"]["stride"], "pad": h["conv"]["pad"]})
    bn, cb = spatial_batchnorm_forward(conv, v["gamma"], v["beta"], {"mode": "train", "eps": h["bn"]["eps"]})
    relu1 = np.maximum(bn, 0)
    pool, cp = max_pool_forward_naive(relu1, h["pool"])
    fc1, c1 = affine_forward(pool, v["W2"], v["b2"])
    relu2 = np.maximum(fc1, 0)
    fc2, c2 = affine_forward(relu2, v["W3"], v["b3"])
    loss, dfc2 = softmax_loss(fc2, constants["y"])
    g, d = {}, {"loss": np.asarray(dout), "fc2": (dfc2 * dout).astype(fc2.dtype)}
    d["relu2"], g["W3"], g["b3"] = affine_backward(d["fc2"], c2)
    d["fc1"] = np.where(fc1 > 0, d["relu2"], 0).astype(fc1.dtype)
    d["pool"], g["W2"], g["b2"] = affine_backward(d["fc1"], c1)
    d["relu1"] = max_pool_backward_naive(d["pool"], cp)
    d["bn"] = d["relu1"]                                    # the bug: the relu's mask is skipped
    d["conv"], g["gamma"], g["beta"] = spatial_batchnorm_backward(d["bn"], cb)
    g["x"], g["W1"], g["b1"] = conv_backward_naive(d["conv"], cc)
    outputs = {"conv": conv, "bn": bn, "relu1": relu1, "pool": pool, "fc1": fc1, "relu2": relu2, "fc2": fc2,
               "loss": loss}
    return loss, g, d, outputs
