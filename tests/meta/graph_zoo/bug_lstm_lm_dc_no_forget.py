"""A character LSTM language model whose backward carries the cell gradient to the previous step without the
forget gate: dprev_c = dc instead of f * dc (the op zoo's lstm member, inside a whole model)."""
from reference.networks import lstm_lm
from tests.meta.op_zoo.bug_lstm_dc_no_forget import lstm_backward, lstm_forward

EXPECTED = {"arch": "lstm_lm", "node": "lstm", "tensor": "lstm: dx", "graph_tensor": "dh0",
            "words": "lstm"}


def net(values, constants, hyper, dout):
    return lstm_lm(values, constants, hyper, dout, lstm=(lstm_forward, lstm_backward))
