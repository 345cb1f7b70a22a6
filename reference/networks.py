"""Readable NumPy reference for whole networks: a residual MLP, CS231n's three-layer convnet with spatial
batch norm, and a weight-tied embedding model -- the architectures ``bpcheck graph`` checks.

Each is one function with bpcheck's graph contract,

    net(values, constants, hyper, dout) -> (out, grads, deltas, outputs)

``values`` the inputs and parameters by name, ``constants`` the labels (and ids), ``hyper`` each
node's hyper-parameters by node name, ``dout`` the cotangent of the loss (a scalar; training sends
1). ``grads`` holds dC/d(name) for every input and parameter, ``deltas`` dC/d(node output) for each
node, ``outputs`` each node's forward value (so bpcheck can judge every node on its own): the
forward pass keeps each layer's cache, the backward pass walks the layers in reverse,
and a tensor read twice gets the sum of both gradients (``+=``). Built on ``reference.layers``;
imports neither torch, jax nor bpcheck.
"""
import numpy as np

from reference.layers import (affine_backward, affine_forward, conv_backward_naive, conv_forward_naive,
                              layernorm_backward, layernorm_forward, max_pool_backward_naive,
                              max_pool_forward_naive, softmax_loss, spatial_batchnorm_backward,
                              spatial_batchnorm_forward, word_embedding_backward, word_embedding_forward)

__all__ = ["residual_mlp", "cnn", "tied_embedding"]


def _relu(z):
    return np.maximum(z, 0), z


def _relu_backward(dout, z):
    return np.where(z > 0, dout, 0).astype(dout.dtype)


def _loss(scores, y, dout):
    """softmax_loss with its scalar cotangent folded in: (loss, dC/dscores = dout * dloss/dscores)."""
    loss, dscores = softmax_loss(scores, y)
    return loss, (dscores * dout).astype(scores.dtype)


def residual_mlp(values, constants, hyper, dout):
    """x (N, D) -> fc1 -> relu -> fc2 -> skip = fc2 + x -> norm (layer norm) -> fc3 -> softmax loss."""
    v = values
    fc1, c1 = affine_forward(v["x"], v["w1"], v["b1"])
    relu, cr = _relu(fc1)
    fc2, c2 = affine_forward(relu, v["w2"], v["b2"])
    skip = fc2 + v["x"]                                          # x is read twice: by fc1 and here
    norm, cn = layernorm_forward(skip, v["gamma"], v["beta"], hyper["norm"])
    fc3, c3 = affine_forward(norm, v["w3"], v["b3"])
    loss, dfc3 = _loss(fc3, constants["y"], dout)
    g, d = {}, {"loss": np.asarray(dout), "fc3": dfc3}
    d["norm"], g["w3"], g["b3"] = affine_backward(dfc3, c3)
    d["skip"], g["gamma"], g["beta"] = layernorm_backward(d["norm"], cn)
    d["fc2"] = d["skip"]                                         # d(fc2 + x)/d fc2 = 1
    d["relu"], g["w2"], g["b2"] = affine_backward(d["fc2"], c2)
    d["fc1"] = _relu_backward(d["relu"], cr)
    g["x"], g["w1"], g["b1"] = affine_backward(d["fc1"], c1)
    g["x"] = g["x"] + d["skip"]                                  # accumulate: the skip's share of dx
    outputs = {"fc1": fc1, "relu": relu, "fc2": fc2, "skip": skip, "norm": norm, "fc3": fc3, "loss": loss}
    return loss, g, d, outputs


def cnn(values, constants, hyper, dout):
    """x (N, C, H, W) -> conv -> bn (spatial batch norm) -> relu1 -> pool (2x2 max) -> fc1 -> relu2 -> fc2
    -> softmax loss (CS231n's ThreeLayerConvNet with batch norm)."""
    v = values
    h = hyper
    conv, cc = conv_forward_naive(v["x"], v["W1"], v["b1"], {"stride": h["conv"]["stride"],
                                                              "pad": h["conv"]["pad"]})
    bn, cb = spatial_batchnorm_forward(conv, v["gamma"], v["beta"], {"mode": "train", "eps": h["bn"]["eps"]})
    relu1, r1 = _relu(bn)
    pool, cp = max_pool_forward_naive(relu1, h["pool"])
    fc1, c1 = affine_forward(pool, v["W2"], v["b2"])
    relu2, r2 = _relu(fc1)
    fc2, c2 = affine_forward(relu2, v["W3"], v["b3"])
    loss, dfc2 = _loss(fc2, constants["y"], dout)
    g, d = {}, {"loss": np.asarray(dout), "fc2": dfc2}
    d["relu2"], g["W3"], g["b3"] = affine_backward(dfc2, c2)
    d["fc1"] = _relu_backward(d["relu2"], r2)
    d["pool"], g["W2"], g["b2"] = affine_backward(d["fc1"], c1)
    d["relu1"] = max_pool_backward_naive(d["pool"], cp)
    d["bn"] = _relu_backward(d["relu1"], r1)
    d["conv"], g["gamma"], g["beta"] = spatial_batchnorm_backward(d["bn"], cb)
    g["x"], g["W1"], g["b1"] = conv_backward_naive(d["conv"], cc)
    outputs = {"conv": conv, "bn": bn, "relu1": relu1, "pool": pool, "fc1": fc1, "relu2": relu2, "fc2": fc2,
               "loss": loss}
    return loss, g, d, outputs


def tied_embedding(values, constants, hyper, dout):
    """ids (N,) -> embed = W[ids] -> WT = W^T -> logits = embed WT + b -> softmax loss: W is read twice."""
    W, b = values["W"], values["b"]
    embed, ce = word_embedding_forward(constants["ids"], W)
    WT = W.T
    logits, cl = affine_forward(embed, WT, b)
    loss, dlogits = _loss(logits, constants["y"], dout)
    g, d = {}, {"loss": np.asarray(dout), "logits": dlogits}
    d["embed"], d["WT"], g["b"] = affine_backward(dlogits, cl)
    g["W"] = word_embedding_backward(d["embed"], ce) + d["WT"].T  # both uses of W, summed
    return loss, g, d, {"embed": embed, "WT": WT, "logits": logits, "loss": loss}
