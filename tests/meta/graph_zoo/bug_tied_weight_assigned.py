"""Weight tying whose backward keeps only the output layer's gradient for the shared matrix: dW = dWT.T,
the embedding's part (rows gathered by the ids) dropped."""
from reference.networks import tied_embedding

EXPECTED = {"arch": "tied_embedding", "node": "W", "tensor": "dW (sum of 2 parts)", "graph_tensor": "dW", "words": "assigned with = instead of accumulated with +="}


def net(values, constants, hyper, dout):
    loss, g, d, outputs = tied_embedding(values, constants, hyper, dout)
    g["W"] = d["WT"].T                       # the bug: W's use by the embedding is forgotten
    return loss, g, d, outputs
