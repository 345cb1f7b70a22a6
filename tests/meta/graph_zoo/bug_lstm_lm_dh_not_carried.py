"""A character LSTM language model whose backward through time does not carry dprev_h to the previous step:
each step gets only its own upstream gradient dh[t] (the op zoo's lstm member, inside a whole model)."""
from reference.networks import lstm_lm
from tests.meta.op_zoo.bug_lstm_dh_not_carried import lstm_backward, lstm_forward

EXPECTED = {"arch": "lstm_lm", "node": "lstm", "tensor": "lstm: dx", "graph_tensor": "dh0",
            "words": "lstm"}


def net(values, constants, hyper, dout):
    return lstm_lm(values, constants, hyper, dout, lstm=(lstm_forward, lstm_backward))
