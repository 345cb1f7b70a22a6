"""Recurrent cells: the vanilla (tanh) RNN and the LSTM, one step and a whole sequence (CS231n's rnn_layers.py).

Shapes (float32 or float64): x (N, D) for a step, (N, T, D) for a sequence; hidden state h (N, H);
Wx (D, H), Wh (H, H), b (H,) for the RNN; Wx (D, 4H), Wh (H, 4H), b (4H,) for the LSTM.

RNN step (CS231n assignment 3, ``rnn_step_forward``; Elman 1990):

    a = x Wx + prev_h Wh + b,   next_h = tanh(a)
    da = dnext_h (1 - next_h^2),  dx = da Wx^T,  dprev_h = da Wh^T,  dWx = x^T da,  dWh = prev_h^T da,
    db = sum_n da

RNN sequence (``rnn_forward``): h_t = step(x[:, t], h_{t-1}), h_{-1} = h0, output h (N, T, H). Its VJP is
backpropagation through time (Werbos 1990): the upstream gradient arrives at every h_t, so going t = T-1
.. 0, dh_t = dout[:, t] + dh_next, where dh_next = da_{t+1} Wh^T is what step t+1 sends back; dWx, dWh,
db accumulate (+=) over the steps; dh0 is the last dh_next.

LSTM step (Hochreiter & Schmidhuber 1997 with the forget gate of Gers et al. 2000; CS231n's
``lstm_step_forward`` and its gate layout): a = x Wx + prev_h Wh + b (N, 4H) is split into four blocks of
H columns in the order i, f, o, g:

    i = sigmoid(a_i), f = sigmoid(a_f), o = sigmoid(a_o), g = tanh(a_g)
    next_c = f * prev_c + i * g,   next_h = o * tanh(next_c)

A record has one output tensor: the LSTM step's output is next_h and next_c concatenated on the last
axis, (N, 2H) = [next_h | next_c], and its cotangent is [dnext_h | dnext_c]. The VJP, in closed form:

    dc = dnext_c + dnext_h o (1 - tanh^2(next_c))
    do = dnext_h tanh(next_c),  df = dc prev_c,  di = dc g,  dg = dc i,  dprev_c = dc f
    da = [di i(1 - i) | df f(1 - f) | do o(1 - o) | dg (1 - g^2)], then dx, dprev_h, dWx, dWh, db as in
    the RNN step.

LSTM sequence (``lstm_forward``): c0 = 0 as in CS231n; output h (N, T, H); BPTT carries both dh_next and
dc_next = dc f to the previous step.

Gate layout, a declared convention: the record's (and CS231n's) is i, f, o, g with weights stored (D, 4H)
and one bias. PyTorch's is i, f, g, o with weights stored (4H, D) and two biases b_ih, b_hh
(torch.nn.LSTM documentation: "W_ii|W_if|W_ig|W_io"; aten/src/ATen/native/RNN.cpp, LSTMCell: gates
chunked as ingate, forgetgate, cellgate, outgate), so the torch binding permutes the record's blocks
(i, f, o, g) -> (i, f, g, o), transposes, and passes b as b_ih with b_hh = 0 (or None). The torch
bindings are torch's own built-ins: ``torch.rnn_tanh_cell`` and ``torch.lstm_cell`` for a step, and for a
sequence ``torch.rnn_tanh`` / ``torch.lstm``, the kernels torch.nn.RNN / torch.nn.LSTM.forward call (as
``_VF.rnn_tanh`` / ``_VF.lstm``) with flat weights [w_ih, w_hh, b_ih, b_hh], batch_first. JAX has no
recurrent cell in jax itself (Flax has): its binding composes jnp.matmul, jax.nn.sigmoid and jnp.tanh,
with jax.lax.scan over time for a sequence.
"""
import numpy as np

from bpcheck.ops.record import COMMON_FAMILIES, Draw, Op, Slip

__all__ = ["RNN_STEP", "RNN", "LSTM_STEP", "LSTM"]

STEP_FAMILIES = COMMON_FAMILIES + ("saturated_gates", "nonzero_state")
SEQUENCE_FAMILIES = COMMON_FAMILIES + ("saturated_gates", "one_step", "long_sequence")
SATURATED_BIAS = (12.0, 20.0)      # |b| of saturated_gates: |a| >= 8 on nearly every entry (|x Wx + h Wh| small)
PLAIN_STEPS = {False: (2, 6), True: (2, 5)}   # T of the other families: RNN 2..5, LSTM 2..4 (see _draw)
WEIGHT_SCALE = 0.5                 # weights and bias U(-k, k), k = WEIGHT_SCALE / sqrt(H)
TORCH_ORDER = (0, 1, 3, 2)         # torch's gate blocks i, f, g, o, as indices into the record's i, f, o, g


# --- drawing ------------------------------------------------------------------------------------

def _draw(lstm, sequence):
    """x, the initial state(s) and the weights: x, h standard normal (h scaled by 0.8), weights and bias
    U(-k, k) with k = 0.5 / sqrt(H), half the bound torch.nn.RNN and torch.nn.LSTM initialise with; T in
    2..5 for the RNN, 2..4 for the LSTM. saturated_gates: small inputs and weights, |b| in 12..20 with
    random signs, so every gate's pre-activation is far in a tail; nonzero_state: |prev_h| in 0.5..0.95
    and |prev_c| in 1..3 (a step's state, as after many steps); one_step: T = 1; long_sequence: T in
    6..8 (H <= 3, N <= 2).

    Why the LSTM's ordinary sequences are short: the rounding bound of BPTT (algebra.Model) grows with
    T -- each step's sigmoid' and tanh' are bounded as s(1 - s) and 1 - t^2 with a library tanh/exp good
    to K_FN u, and the errors travel back through |Wh| where the gradient travels through Wh with
    cancellation. Measured on 200 float32 plain and uniform_cotangent draws, a 1e-4 error of an LSTM
    gradient tensor is inside the tolerance for 0% of the tensors at T = 2, 4% at T = 3, 7% at T = 4 and
    8% at T = 5 (the RNN: under 1% at every T up to 5; with torch's full init scale, twice these). The plain and uniform_cotangent families carry tests/ops/test_tightness.py's
    90% claim, so they stop where it holds; the longer sequences are long_sequence, whose sensitivity
    is measured there, not asserted."""
    def draw(rng, family, dtype):
        n, d, hid = int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(1, 5))
        t = {"one_step": 1, "long_sequence": int(rng.integers(6, 9))}.get(family, int(rng.integers(*PLAIN_STEPS[lstm])))
        if family == "long_sequence":
            n, hid = min(n, 2), min(hid, 3)
        width = 4 * hid if lstm else hid
        saturated = family == "saturated_gates"
        spread = 0.3 if saturated else 1.0
        x = rng.standard_normal((n, t, d) if sequence else (n, d)) * spread
        h = rng.standard_normal((n, hid)) * (0.3 if saturated else 0.8)
        if family == "nonzero_state":
            h = rng.choice([-1, 1], size=(n, hid)) * rng.uniform(0.5, 0.95, size=(n, hid))
        k = WEIGHT_SCALE * spread / np.sqrt(hid)        # half torch.nn.RNN / LSTM's U(-1/sqrt(H), 1/sqrt(H))
        wx, wh = rng.uniform(-k, k, size=(d, width)), rng.uniform(-k, k, size=(hid, width))
        b = (rng.choice([-1, 1], size=width) * rng.uniform(*SATURATED_BIAS, size=width) if saturated
             else rng.uniform(-k, k, size=width))
        inputs = {"x": x, ("h0" if sequence else "prev_h"): h}
        if lstm and not sequence:
            inputs["prev_c"] = (rng.choice([-1, 1], size=(n, hid)) * rng.uniform(1.0, 3.0, size=(n, hid))
                                if family == "nonzero_state" else rng.standard_normal((n, hid)))
        inputs.update(Wx=wx, Wh=wh, b=b)
        return Draw({k: v.astype(dtype) for k, v in inputs.items()})
    return draw


# --- the definitions ----------------------------------------------------------------------------

def _pre(ns, x, h, a):
    """a = x Wx + h Wh + b."""
    return ns.matmul(x, a["Wx"]) + ns.matmul(h, a["Wh"]) + a["b"].reshape(1, -1)


def _stack(ns, steps):
    """[(N, H)] * T -> (N, T, H)."""
    n, hid = steps[0].shape
    return ns.concat([s.reshape(n, 1, hid) for s in steps], 1)


def _rnn_cell(ns, x, h, a):
    """(next_h, tanh'(a))."""
    return ns.activation("tanh", _pre(ns, x, h, a))


def _lstm_cell(ns, x, h, c, a):
    """The step's values: i, f, o, g and their derivatives, next_c, tanh(next_c) and its derivative,
    next_h."""
    hid = h.shape[1]
    z = _pre(ns, x, h, a)
    s = {}
    for k, (gate, fn) in enumerate((("i", "sigmoid"), ("f", "sigmoid"), ("o", "sigmoid"), ("g", "tanh"))):
        s[gate], s["d" + gate] = ns.activation(fn, z[:, k * hid:(k + 1) * hid])
    s["c"] = s["f"] * c + s["i"] * s["g"]
    s["tc"], s["dtc"] = ns.activation("tanh", s["c"])
    s["h"] = s["o"] * s["tc"]
    s["prev_c"] = c
    return s


def _acc(total, term, accumulate=True):
    """total + term (total None: term); without ``accumulate`` the term replaces the total (=, not +=)."""
    return term if total is None or not accumulate else total + term


def _rnn_states(ns, a):
    x, h = a["x"], a["h0"]
    hs, ds = [], []
    for t in range(x.shape[1]):
        h, d = _rnn_cell(ns, x[:, t, :], h, a)
        hs.append(h)
        ds.append(d)
    return hs, ds


def _rnn_step_forward(ns, a, c, h):
    return _rnn_cell(ns, a["x"], a["prev_h"], a)[0]


def _rnn_step_vjp(ns, a, c, h, dout, *, preactivation_prime=False):
    nh, d = _rnn_cell(ns, a["x"], a["prev_h"], a)
    if preactivation_prime:                               # slip: 1 - a^2 where 1 - tanh(a)^2 belongs
        z = _pre(ns, a["x"], a["prev_h"], a)
        d = 1 - z * z
    da = dout * d
    return {"x": ns.matmul(da, a["Wx"].T), "prev_h": ns.matmul(da, a["Wh"].T),
            "Wx": ns.matmul(a["x"].T, da), "Wh": ns.matmul(a["prev_h"].T, da), "b": ns.sum(da, 0)}


def _rnn_forward(ns, a, c, h):
    return _stack(ns, _rnn_states(ns, a)[0])


def _rnn_vjp(ns, a, c, h, dout, *, carry=True, accumulate_wh=True):
    x = a["x"]
    hs, ds = _rnn_states(ns, a)
    prev = [a["h0"]] + hs[:-1]
    dx, dwx, dwh, db, dnext = [None] * x.shape[1], None, None, None, None
    for t in reversed(range(x.shape[1])):
        dh = dout[:, t, :] if dnext is None or not carry else dout[:, t, :] + dnext
        da = dh * ds[t]
        dx[t] = ns.matmul(da, a["Wx"].T)
        dwx = _acc(dwx, ns.matmul(x[:, t, :].T, da))
        dwh = _acc(dwh, ns.matmul(prev[t].T, da), accumulate_wh)
        db = _acc(db, ns.sum(da, 0))
        dnext = ns.matmul(da, a["Wh"].T)
    return {"x": _stack(ns, dx), "h0": dnext, "Wx": dwx, "Wh": dwh, "b": db}


def _lstm_cell_vjp(ns, s, dh, dc_in, a, *, tanh_prime=True, df_prev_c=True, forget=True):
    """(da, dprev_c) of one LSTM step from dnext_h ``dh`` and dnext_c ``dc_in`` (None: 0)."""
    dc = dh * s["o"] * s["dtc"] if tanh_prime else dh * s["o"]
    dc = dc if dc_in is None else dc_in + dc
    do = dh * s["tc"]
    df = dc * s["prev_c"] if df_prev_c else dc
    da = ns.concat([dc * s["g"] * s["di"], df * s["df"], do * s["do"], dc * s["i"] * s["dg"]], 1)
    return da, (dc * s["f"] if forget else dc)


def _lstm_step_forward(ns, a, c, h):
    s = _lstm_cell(ns, a["x"], a["prev_h"], a["prev_c"], a)
    return ns.concat([s["h"], s["c"]], 1)


def _lstm_step_vjp(ns, a, c, h, dout, **slip):
    hid = a["prev_h"].shape[1]
    s = _lstm_cell(ns, a["x"], a["prev_h"], a["prev_c"], a)
    da, dprev_c = _lstm_cell_vjp(ns, s, dout[:, :hid], dout[:, hid:], a, **slip)
    return {"x": ns.matmul(da, a["Wx"].T), "prev_h": ns.matmul(da, a["Wh"].T), "prev_c": dprev_c,
            "Wx": ns.matmul(a["x"].T, da), "Wh": ns.matmul(a["prev_h"].T, da), "b": ns.sum(da, 0)}


def _lstm_states(ns, a):
    x, h = a["x"], a["h0"]
    c = ns.zeros(h.shape)
    states = []
    for t in range(x.shape[1]):
        s = _lstm_cell(ns, x[:, t, :], h, c, a)
        h, c = s["h"], s["c"]
        states.append(s)
    return states


def _lstm_forward(ns, a, c, h):
    return _stack(ns, [s["h"] for s in _lstm_states(ns, a)])


def _lstm_vjp(ns, a, c, h, dout, *, carry=True, accumulate_wh=True, **slip):
    x = a["x"]
    states = _lstm_states(ns, a)
    prev = [a["h0"]] + [s["h"] for s in states[:-1]]
    dx, dwx, dwh, db, dnext, dcnext = [None] * x.shape[1], None, None, None, None, None
    for t in reversed(range(x.shape[1])):
        dh = dout[:, t, :] if dnext is None or not carry else dout[:, t, :] + dnext
        da, dcnext = _lstm_cell_vjp(ns, states[t], dh, dcnext, a, **slip)
        dx[t] = ns.matmul(da, a["Wx"].T)
        dwx = _acc(dwx, ns.matmul(x[:, t, :].T, da))
        dwh = _acc(dwh, ns.matmul(prev[t].T, da), accumulate_wh)
        db = _acc(db, ns.sum(da, 0))
        dnext = ns.matmul(da, a["Wh"].T)
    return {"x": _stack(ns, dx), "h0": dnext, "Wx": dwx, "Wh": dwh, "b": db}


# --- the frameworks' own built-ins --------------------------------------------------------------

def _torch_gates(torch, w):
    """The record's (.., 4H) gate blocks i, f, o, g as torch's i, f, g, o, transposed to (4H, ..)."""
    hid = w.shape[-1] // 4
    blocks = torch.cat([w[..., k * hid:(k + 1) * hid] for k in TORCH_ORDER], -1)
    return blocks.T if blocks.ndim == 2 else blocks


def _torch_rnn_step(torch, a, c, h):
    return torch.rnn_tanh_cell(a["x"], a["prev_h"], a["Wx"].T, a["Wh"].T, a["b"], None)


def _torch_rnn(torch, a, c, h):
    params = [a["Wx"].T, a["Wh"].T, a["b"], torch.zeros_like(a["b"])]
    # torch.rnn_tanh(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
    return torch.rnn_tanh(a["x"], a["h0"].unsqueeze(0), params, True, 1, 0.0, True, False, True)[0]


def _torch_lstm_step(torch, a, c, h):
    w_ih, w_hh, b = (_torch_gates(torch, a[k]) for k in ("Wx", "Wh", "b"))
    next_h, next_c = torch.lstm_cell(a["x"], [a["prev_h"], a["prev_c"]], w_ih, w_hh, b, None)
    return torch.cat([next_h, next_c], 1)


def _torch_lstm(torch, a, c, h):
    w_ih, w_hh, b = (_torch_gates(torch, a[k]) for k in ("Wx", "Wh", "b"))
    h0 = a["h0"].unsqueeze(0)
    return torch.lstm(a["x"], (h0, torch.zeros_like(h0)), [w_ih, w_hh, b, torch.zeros_like(b)],
                      True, 1, 0.0, True, False, True)[0]


def _jax_rnn_cell(jax, x, h, a):
    return jax.numpy.tanh(jax.numpy.matmul(x, a["Wx"]) + jax.numpy.matmul(h, a["Wh"]) + a["b"])


def _jax_lstm_cell(jax, x, h, c, a):
    jnp = jax.numpy
    z = jnp.matmul(x, a["Wx"]) + jnp.matmul(h, a["Wh"]) + a["b"]
    i, f, o, g = jnp.split(z, 4, axis=1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def _jax_scan(jax, cell, carry, x):
    """Run ``cell(carry, x_t) -> (carry, h_t)`` over x's axis 1 with jax.lax.scan; h (N, T, H)."""
    _, hs = jax.lax.scan(cell, carry, jax.numpy.swapaxes(x, 0, 1))
    return jax.numpy.swapaxes(hs, 0, 1)


def _jax_rnn(jax, a, c, h):
    def cell(hh, xt):
        nh = _jax_rnn_cell(jax, xt, hh, a)
        return nh, nh
    return _jax_scan(jax, cell, a["h0"], a["x"])


def _jax_lstm(jax, a, c, h):
    def cell(state, xt):
        nh, nc = _jax_lstm_cell(jax, xt, *state, a)
        return (nh, nc), nh
    return _jax_scan(jax, cell, (a["h0"], jax.numpy.zeros_like(a["h0"])), a["x"])


# --- CS231n signatures --------------------------------------------------------------------------

def _named(*names):
    return lambda result: dict(zip(names, result))


def _lstm_step_call(fwd, a, c, h):
    """lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b) -> (next_h, next_c, cache): the record's output
    [next_h | next_c] and the cache."""
    next_h, next_c, cache = fwd(a["x"], a["prev_h"], a["prev_c"], a["Wx"], a["Wh"], a["b"])
    return np.concatenate([next_h, next_c], axis=1), cache


def _lstm_step_backward(bwd, dout, cache):
    """lstm_step_backward(dnext_h, dnext_c, cache): the cotangent [dnext_h | dnext_c] split in two."""
    hid = dout.shape[1] // 2
    return bwd(dout[:, :hid].copy(), dout[:, hid:].copy(), cache)


# --- shrinking ----------------------------------------------------------------------------------

def _shrink(lstm, sequence):
    """Fewer examples, time steps, input features, hidden units (each unit's columns in every gate)."""
    state = ("h0",) if sequence else (("prev_h", "prev_c") if lstm else ("prev_h",))
    gates = 4 if lstm else 1

    def drop(v, axis, i):
        return np.delete(v, i, axis)

    def shrink(draw):
        a = draw.inputs
        n, hid, d = a["x"].shape[0], a["Wh"].shape[0], a["x"].shape[-1]
        for i in range(n if n > 1 else 0):
            yield Draw({k: (drop(v, 0, i) if k == "x" or k in state else v) for k, v in a.items()})
        if sequence:
            for i in range(a["x"].shape[1] if a["x"].shape[1] > 1 else 0):
                yield Draw({**a, "x": drop(a["x"], 1, i)})
        for i in range(d if d > 1 else 0):
            yield Draw({**a, "x": drop(a["x"], a["x"].ndim - 1, i), "Wx": drop(a["Wx"], 0, i)})
        for j in range(hid if hid > 1 else 0):
            cols = [k * hid + j for k in range(gates)]
            yield Draw({**{k: drop(a[k], 1, j) for k in state}, "x": a["x"], "Wx": drop(a["Wx"], 1, cols),
                        "Wh": drop(drop(a["Wh"], 1, cols), 0, j), "b": drop(a["b"], 0, cols)})
    return shrink


# --- slips (public reports: CS231n assignment 3 solutions and forum threads) ----------------------

def _slip(vjp, names=None, **flags):
    def wrong(ns, a, c, h, dout):
        grads = vjp(ns, a, c, h, dout, **flags)
        return grads if names is None else {k: grads[k] for k in names}
    return wrong


_NOT_CARRIED = ("dh_next not carried to the previous step: BPTT used only the upstream dh[:, t] "
                "(dh_t = dout[:, t] + dh_next, dh_next = da_{t+1} Wh^T)")
GATES = ("i", "f", "o", "g")


def _wrong(errors, allowed):
    """Indices whose error is a real part of the tensor's: over allowed / sqrt(count) and over 10^-3 of
    the largest (a share of the tolerance, not of the rounding noise)."""
    errors = np.asarray(errors)
    floor = max(allowed / np.sqrt(errors.size), 1e-3 * float(np.max(errors, initial=0.0)))
    return [int(i) for i in np.flatnonzero(errors > floor)]


def _locate(lstm):
    """``Op.locate`` of a recurrent record: for a sequence's dx, the time steps that are wrong, and which one
    backpropagation through time reaches first (it runs t = T-1 down to 0); for an LSTM's dWx, dWh, db,
    the gate blocks (i, f, o, g) that are wrong."""
    def locate(case, tensor, g, t, allowed):
        words = []
        if tensor == "dx" and g.ndim == 3 and g.shape[1] > 1:
            steps = g.shape[1]
            wrong = _wrong([np.linalg.norm(g[:, k] - t[:, k]) for k in range(steps)], allowed)
            if wrong:
                first = max(wrong)
                after = "" if first == steps - 1 else (f"; the steps after it are right, so what step {first + 1} "
                                                       f"sends back to step {first} (dh_next, dc_next) is wrong")
                words.append(f"dx is wrong at time steps {wrong} of 0..{steps - 1}: the first wrong step in "
                             f"backpropagation through time is t = {first}{after}")
        if lstm and tensor in ("dWx", "dWh", "db") and g.shape[-1] % 4 == 0:
            h = g.shape[-1] // 4
            wrong = _wrong([np.linalg.norm(g[..., k * h:(k + 1) * h] - t[..., k * h:(k + 1) * h]) for k in range(4)],
                           allowed)
            if wrong and len(wrong) < 4:
                words.append(f"{tensor}'s error sits in the gate blocks {', '.join(GATES[k] for k in wrong)} "
                             f"(columns in the order i, f, o, g; the other blocks are within tolerance)")
        return words
    return locate


_WH_ASSIGNED = "dWh assigned (=) instead of accumulated (+=) over the time steps: one step's term kept"
_NO_FORGET = "the cell gradient passed back without the forget gate: dprev_c = dc where f * dc belongs"
_DF_NO_C = "forget-gate gradient without prev_c: df = dc where dc * prev_c belongs"
_NO_TANH_C = "tanh'(next_c) missing: dc = dnext_c + dnext_h * o without (1 - tanh(next_c)^2)"

RNN_STEP = Op(
    name="rnn_step",
    definition="vanilla RNN step, x (N, D), prev_h (N, H), Wx (D, H), Wh (H, H), b (H,): "
               "next_h = tanh(x Wx + prev_h Wh + b) (CS231n rnn_step_forward)",
    inputs=("x", "prev_h", "Wx", "Wh", "b"), forward=_rnn_step_forward, vjp=_rnn_step_vjp,
    draw=_draw(False, False), families=STEP_FAMILIES, torch=_torch_rnn_step,
    jax=lambda jax, a, c, h: _jax_rnn_cell(jax, a["x"], a["prev_h"], a),
    cs231n=("rnn_step_forward", "rnn_step_backward",
            lambda fwd, a, c, h: fwd(a["x"], a["prev_h"], a["Wx"], a["Wh"], a["b"]),
            _named("x", "prev_h", "Wx", "Wh", "b")),
    slips=(Slip("tanh_prime_of_preactivation", "tanh' taken as 1 - a^2 of the pre-activation a, where "
                "1 - tanh(a)^2 = 1 - next_h^2 belongs", _slip(_rnn_step_vjp, preactivation_prime=True)),),
    shrink=_shrink(False, False))

RNN = Op(
    name="rnn",
    definition="vanilla RNN over a sequence, x (N, T, D), h0 (N, H), Wx (D, H), Wh (H, H), b (H,): "
               "h_t = tanh(x_t Wx + h_{t-1} Wh + b), out h (N, T, H) (CS231n rnn_forward)",
    inputs=("x", "h0", "Wx", "Wh", "b"), forward=_rnn_forward, vjp=_rnn_vjp,
    draw=_draw(False, True), families=SEQUENCE_FAMILIES, torch=_torch_rnn, jax=_jax_rnn,
    cs231n=("rnn_forward", "rnn_backward", lambda fwd, a, c, h: fwd(a["x"], a["h0"], a["Wx"], a["Wh"], a["b"]),
            _named("x", "h0", "Wx", "Wh", "b")),
    locate=_locate(False),
    slips=(Slip("dh_not_carried", _NOT_CARRIED, _slip(_rnn_vjp, carry=False)),
           Slip("dwh_assigned", _WH_ASSIGNED, _slip(_rnn_vjp, ("Wh",), accumulate_wh=False))),
    shrink=_shrink(False, True))

LSTM_STEP = Op(
    name="lstm_step",
    definition="LSTM step, x (N, D), prev_h, prev_c (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,), gates i, f, o, g "
               "(CS231n's order): next_c = f prev_c + i g, next_h = o tanh(next_c); the output is "
               "[next_h | next_c] concatenated on the last axis, (N, 2H) (CS231n lstm_step_forward)",
    inputs=("x", "prev_h", "prev_c", "Wx", "Wh", "b"), forward=_lstm_step_forward, vjp=_lstm_step_vjp,
    draw=_draw(True, False), families=STEP_FAMILIES, torch=_torch_lstm_step,
    jax=lambda jax, a, c, h: jax.numpy.concatenate(_jax_lstm_cell(jax, a["x"], a["prev_h"], a["prev_c"], a), 1),
    cs231n=("lstm_step_forward", "lstm_step_backward", _lstm_step_call,
            _named("x", "prev_h", "prev_c", "Wx", "Wh", "b"), None, _lstm_step_backward),
    locate=_locate(True),
    slips=(Slip("dprev_c_no_forget", _NO_FORGET, _slip(_lstm_step_vjp, ("prev_c",), forget=False)),
           Slip("df_no_prev_c", _DF_NO_C, _slip(_lstm_step_vjp, ("x", "prev_h", "Wx", "Wh", "b"), df_prev_c=False)),
           Slip("no_tanh_prime_c", _NO_TANH_C, _slip(_lstm_step_vjp, tanh_prime=False))),
    shrink=_shrink(True, False))

LSTM = Op(
    name="lstm",
    definition="LSTM over a sequence, x (N, T, D), h0 (N, H), c0 = 0, Wx (D, 4H), Wh (H, 4H), b (4H,), gates "
               "i, f, o, g (CS231n's order): out h (N, T, H) (CS231n lstm_forward)",
    inputs=("x", "h0", "Wx", "Wh", "b"), forward=_lstm_forward, vjp=_lstm_vjp,
    draw=_draw(True, True), families=SEQUENCE_FAMILIES, torch=_torch_lstm, jax=_jax_lstm,
    cs231n=("lstm_forward", "lstm_backward", lambda fwd, a, c, h: fwd(a["x"], a["h0"], a["Wx"], a["Wh"], a["b"]),
            _named("x", "h0", "Wx", "Wh", "b")),
    locate=_locate(True),
    slips=(Slip("dh_not_carried", _NOT_CARRIED, _slip(_lstm_vjp, carry=False)),
           Slip("dc_no_forget", "the cell gradient carried to the previous step without the forget gate: "
                "dc_next = dc where f * dc belongs", _slip(_lstm_vjp, forget=False)),
           Slip("df_no_prev_c", _DF_NO_C, _slip(_lstm_vjp, df_prev_c=False)),
           Slip("no_tanh_prime_c", _NO_TANH_C, _slip(_lstm_vjp, tanh_prime=False)),
           Slip("dwh_assigned", _WH_ASSIGNED, _slip(_lstm_vjp, ("Wh",), accumulate_wh=False))),
    shrink=_shrink(True, True))
