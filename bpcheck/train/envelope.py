"""Free-running training and the honest envelope: "is my loss curve's difference a bug or rounding?"

Both run K steps from the same start without teacher forcing: the candidate with its own ``step`` (fed the
gradient at its own parameters), and an ensemble of M truth trajectories -- the optimizer's definition in
float64, parameters stored in the case's dtype after every step -- whose every gradient is moved, in a
random direction, by exactly the error the tolerance grants a correct implementation there
(SAFETY u ||s|| + floor, s the graph's rounding model at those parameters): Monte-Carlo arithmetic in
spirit (Parker 1997), at the size of bpcheck's own tolerance. Per step it reports the loss of each, the
ensemble's spread, and the candidate's distance from the unperturbed trajectory in units of that spread;
the horizon is the first step at which two ensemble members' losses part by more than 1% -- past it, any
two correct implementations differ anyway. A free-running difference is never a failure by itself: only
the teacher-forced judgement (``bpcheck.train.teacher``) fails a run.
"""
import numpy as np

from bpcheck.judge.compare import SAFETY, underflow_floor
from bpcheck.ops.algebra import UNIT_ROUNDOFF, Plain
from bpcheck.ops.graph import bound, walk
from bpcheck.core.rounding import norm2
from bpcheck.train.optimizers import get as get_optimizer

__all__ = ["envelope", "MEMBERS", "PART"]

MEMBERS = 8
PART = 0.01          # the horizon: two members' losses differ by more than 1%


def _gradient(case, params):
    """(loss, {param: gradient}) in float64 at ``params`` (the walker in float64: the envelope is a picture)."""
    gc = case.graph_case
    values = {**gc.values, **params}
    r = walk(gc.graph, values, gc.constants, gc.cotangent, Plain())
    return float(np.sum(r["out"])), {k: np.asarray(r["grads"][k], dtype=np.float64) for k in gc.graph.params}


def _allowed(case, params):
    """{param: the tolerance a correct implementation's gradient is granted there (2-norm)}."""
    gc = case.graph_case
    s = bound(gc.graph, {**gc.values, **params}, gc.constants, gc.cotangent, gc.dtype)
    u = UNIT_ROUNDOFF[gc.dtype]
    return {k: SAFETY * u * norm2(s["d" + k]) + underflow_floor(gc.dtype, np.size(params[k])) for k in gc.graph.params}


def _step(case, params, grads, state, t):
    """The definition's update in float64, stored in the dtype."""
    optimizer = get_optimizer(case.optimizer)
    ns, dtype = Plain(), case.graph_case.dtype
    if optimizer.global_scale is not None:
        scale = float(np.asarray(optimizer.global_scale(ns, {k: ns.input(g) for k, g in grads.items()}, case.hyper)))
        grads = {k: g * scale for k, g in grads.items()} if scale < 1 else grads
    new, states = {}, {}
    for k, p in params.items():
        q, states[k] = optimizer.update(ns, ns.input(p), ns.input(grads[k]), state.get(k, {}), case.hyper, t)
        new[k] = np.asarray(q, dtype=np.float64).astype(dtype).astype(np.float64)
    return new, states


def envelope(case, step_fn, *, members=MEMBERS, seed=0):
    """{"steps": [1..K], "truth": losses, "members": [M lists of losses], "candidate": losses, "spread":
    per-step max |member - truth| loss, "loss_units": |candidate - truth| / spread, "distance": the
    candidate's ||theta - theta_truth|| / the members' largest, "horizon": step or None}. Losses are at the
    parameters before each step."""
    dtype = case.graph_case.dtype
    start = {k: np.asarray(v, dtype=np.float64) for k, v in case.params.items()}
    rng = np.random.default_rng(seed)
    runs = [dict(start) for _ in range(members + 1)]              # run 0: the unperturbed truth
    states = [{} for _ in runs]
    mine, my_state = dict(start), None
    out = {"steps": [], "truth": [], "members": [[] for _ in range(members)], "candidate": [], "distance": []}
    for t in range(1, case.steps + 1):
        losses = []
        for i, params in enumerate(runs):
            loss, grads = _gradient(case, params)
            if i > 0:
                allowed = _allowed(case, params)
                for k, g in grads.items():
                    d = rng.standard_normal(g.shape)
                    grads[k] = g + allowed[k] * d / max(np.linalg.norm(d), 1e-300)
            runs[i], states[i] = _step(case, params, grads, states[i], t)
            losses.append(loss)
        loss, grads = _gradient(case, mine)
        new, my_state = step_fn({k: v.astype(dtype) for k, v in mine.items()},
                                {k: g.astype(dtype) for k, g in grads.items()}, my_state, dict(case.hyper))
        mine = {k: np.asarray(v, dtype=np.float64) for k, v in new.items()}
        spread = max(_distance(runs[i], runs[0]) for i in range(1, len(runs)))
        out["steps"].append(t)
        out["truth"].append(losses[0])
        for i in range(members):
            out["members"][i].append(losses[i + 1])
        out["candidate"].append(loss)
        out["distance"].append(_distance(mine, runs[0]) / spread if spread > 0 else (0.0 if _distance(mine, runs[0])
                                                                                      == 0 else np.inf))
    member_losses = np.asarray(out["members"])
    parted = (np.max(member_losses, 0) - np.min(member_losses, 0)) > PART * np.abs(np.asarray(out["truth"]))
    out["spread"] = list(np.max(np.abs(member_losses - np.asarray(out["truth"])), 0))
    gap = np.abs(np.asarray(out["candidate"]) - np.asarray(out["truth"]))
    with np.errstate(divide="ignore", invalid="ignore"):
        out["loss_units"] = list(np.where(gap == 0, 0.0, gap / np.asarray(out["spread"])))
    out["horizon"] = int(np.argmax(parted)) + 1 if np.any(parted) else None
    return out


def _distance(a, b):
    return float(np.sqrt(sum(np.sum((a[k] - b[k]) ** 2) for k in a)))
