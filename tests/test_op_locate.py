"""Where inside a wrong tensor the error sits: a recurrent op names the first wrong time step of
backpropagation through time and the wrong gate blocks (``Op.locate``), on every seed."""
from pathlib import Path

import numpy as np
import pytest

from bpcheck import ops
from bpcheck.opcheck.candidates import load_module
from bpcheck.ops.cases import draw_case
from bpcheck.opcheck.check import check_op
from bpcheck.ops.exact import truth

ZOO = Path(__file__).parent / "meta" / "op_zoo"
SEEDS = range(1, 6)


def _hints(report, tensor):
    return next(r for r in report.first["rows"] if r["tensor"] == tensor).get("hints", [])


@pytest.mark.parametrize("member", ["bug_lstm_dh_not_carried.py", "bug_rnn_dh_not_carried.py"])
def test_a_gradient_not_carried_back_is_placed_at_the_step_it_fails_to_reach(member):
    module = load_module(ZOO / member)
    for seed in SEEDS:
        report = check_op(module.EXPECTED["op"], layers=module, extended=True, seed=seed)
        words = " ".join(_hints(report, "dx"))
        steps = report.first["case"].inputs["x"].shape[1]
        assert f"the first wrong step in backpropagation through time is t = {steps - 2}" in words, words
        assert f"what step {steps - 1} sends back to step {steps - 2}" in words, words


def test_a_forget_gate_slip_is_placed_in_the_f_block():
    module = load_module(ZOO / "bug_lstm_step_df_no_prev_c.py")
    for seed in SEEDS:
        report = check_op("lstm_step", layers=module, extended=True, seed=seed)
        assert "gate blocks f (" in " ".join(_hints(report, "dWx")), _hints(report, "dWx")


def test_an_error_at_the_last_step_and_in_every_gate_is_said_so():
    """The control: an error in the last step's dx is its own step's, and one in every gate block names none."""
    op = ops.get("lstm")
    case = draw_case(op, "plain", "float64", 3)
    t = truth(op, case)["grads"]
    g = t["x"].copy()
    g[:, -1] += 1.0
    steps = g.shape[1]
    words = op.locate(case, "dx", g, t["x"], 1e-6)
    assert words == [f"dx is wrong at time steps [{steps - 1}] of 0..{steps - 1}: the first wrong step in "
                     f"backpropagation through time is t = {steps - 1}"]
    assert op.locate(case, "dWx", t["Wx"] + 1.0, t["Wx"], 1e-6) == []
    assert op.locate(case, "dWx", t["Wx"], t["Wx"], 1e-6) == []
    np.testing.assert_array_equal(g[:, :-1], t["x"][:, :-1])
