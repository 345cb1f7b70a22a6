"""K steps of training judged step by step at the candidate's own parameters (teacher forcing).

A training case is a graph architecture ending in a loss (``bpcheck.ops.architectures``), its data (the
inputs and constants, fixed: full batch), initial parameters, an optimizer (``bpcheck.train.optimizers``)
with its hyper-parameters, and K. The candidate is a step:

    step(params, grads, state, hyper) -> (params, state)

bpcheck trains: at every step k it computes the true gradient at the candidate's current parameters
theta_k (the graph's certified truth, rounded to the dtype), calls ``step`` with it and the state the
candidate returned last time (None at the first step; opaque to bpcheck), and judges theta_{k+1}.

The judgement of a step: the optimizer's exact update (balls) of the candidate's theta_k, the gradient,
and the exact optimizer state accumulated along the candidate's own trajectory, against the candidate's
theta_{k+1}, allowed SAFETY u ||s|| + floor with s from the rounding model, whose state carries its
rounding from step to step. So chaos cannot make it fail: each step starts where the candidate is. A
step wrong against the definition but right against a convention (tracked from the start) is class
``convention``; the first wrong step is named with its tensor, and hints from the optimizer's slips and
from the gradients (accumulated across steps, not zeroed).
"""
from dataclasses import dataclass, field

import numpy as np
from flint import ctx

from bpcheck.ops.algebra import Exact, Model, Plain
from bpcheck.opcheck.candidates import CandidateFatal, Unsupported
from bpcheck.ops.graph import truth as graph_truth
from bpcheck.ops.graph_cases import draw_graph_case
from bpcheck.opcheck.judge import compare_tensor
from bpcheck.train.optimizers import get as get_optimizer

__all__ = ["TrainCase", "draw_train_case", "judge_steps", "judge_update", "TRAINABLE"]

TRAINABLE = ("residual_mlp", "cnn", "tied_embedding", "lstm_lm")        # architectures ending in a loss
BITS = 256


@dataclass
class TrainCase:
    graph_case: object          # the GraphCase: graph, leaves (theta_0 among them), constants, dtype
    optimizer: str
    hyper: dict
    steps: int

    @property
    def params(self):
        return {k: self.graph_case.values[k] for k in self.graph_case.graph.params}

    @property
    def data(self):
        return {k: self.graph_case.values[k] for k in self.graph_case.graph.inputs}

    def describe(self):
        return f"{self.graph_case.describe()}; {self.optimizer} {self.hyper}; K = {self.steps}"


def draw_train_case(arch, optimizer, dtype, seed, steps=10, hyper=None, size=None):
    """A training case: ``arch``'s (a name or an ``Architecture``) case with cotangent 1 (the loss is
    minimised), ``optimizer`` with its default hyper-parameters updated by ``hyper``."""
    case = draw_graph_case(arch, "uniform_cotangent", dtype, seed, size or (None if isinstance(arch, str)
                                                                             else arch.sizes[0]))
    return TrainCase(case, optimizer, {**get_optimizer(optimizer).hyper, **(hyper or {})}, steps)


def true_gradient(case, params):
    """(loss, {param: gradient}) at ``params`` in float64, certified (the graph's truth)."""
    gc = case.graph_case
    values = {**gc.values, **{k: np.asarray(v) for k, v in params.items()}}
    t = graph_truth(gc.graph, values, gc.constants, gc.cotangent)
    return float(np.sum(t["out"])), {k: t["d" + k] for k in gc.graph.params}


@dataclass
class _Track:
    """One update rule followed along the candidate's trajectory: its exact state (balls) and its
    rounding-model state (carrying the rounding of every earlier step). ``kind``: "definition",
    "convention" or "slip" (with ``note``: the convention's source or the slip's hint); ``accumulate``:
    the rule fed the running sum of the gradients (never zeroed); ``stuck``: its step counter stays 1;
    ``per_tensor``: clipping by each tensor's own norm."""
    update: object
    kind: str = "definition"
    note: str = ""
    accumulate: bool = False
    stuck: bool = False
    per_tensor: bool = False
    exact: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    total: dict = field(default_factory=dict)

    def step(self, optimizer, params, grads, hyper, t, dtype):
        """{param: (exact new value as float64, bound s)}, the states advanced."""
        if self.accumulate:
            self.total = {k: self.total.get(k, 0.0) + np.asarray(g, dtype=np.float64) for k, g in grads.items()}
            grads = self.total
        t = 1 if self.stuck else t
        m, out = Model(dtype), {}
        scale = None if self.per_tensor else _scales(optimizer, grads, hyper, dtype)
        with ctx.workprec(BITS):
            e = Exact(BITS)
            for k, p in params.items():
                g_e, g_m = e.input(grads[k]), m.input(grads[k])
                if self.per_tensor:
                    g_e, g_m = (_clipped(optimizer, e, g_e, grads[k], hyper),
                                _clipped(optimizer, m, g_m, grads[k], hyper))
                elif scale is not None:
                    g_e, g_m = g_e * scale[0], g_m * scale[1]
                p_e, self.exact[k] = self.update(e, e.input(p), g_e, self.exact.get(k, {}), hyper, t)
                p_m, self.model[k] = self.update(m, m.input(p), g_m, self.model.get(k, {}), hyper, t)
                out[k] = (np.asarray(Exact.mid(p_e), dtype=np.float64), m.scale(p_m))
        return out


def _clipped(optimizer, ns, g, g_float, hyper):
    """g scaled by its own clip factor (min(1, c / ||g||), the branch taken on the float gradient)."""
    if float(optimizer.clip_slip(Plain(), Plain().input(g_float), hyper)) >= 1:
        return g
    return g * optimizer.clip_slip(ns, g, hyper)


def _scales(optimizer, grads, hyper, dtype):
    """(exact, model) global gradient scales of a clipping rule, or None (no clipping this step)."""
    if optimizer.global_scale is None:
        return None
    plain = float(np.asarray(optimizer.global_scale(Plain(), {k: Plain().input(g) for k, g in grads.items()},
                                                    hyper)))
    if plain >= 1:
        return None
    m = Model(dtype)
    with ctx.workprec(BITS):
        e = Exact(BITS)
        return (optimizer.global_scale(e, {k: e.input(g) for k, g in grads.items()}, hyper),
                optimizer.global_scale(m, {k: m.input(g) for k, g in grads.items()}, hyper))


NOT_ZEROED = ("gradients accumulate across steps: the update used the sum of this step's and every earlier "
              "step's gradient (never zeroed)")
STUCK = "the step counter is not advanced: the bias correction uses t = 1 at every step"


def _tracks(case):
    """The definition, each convention, each slip and the generic slips (not zeroed; a stuck counter for
    rules that read t), each followed from the first step."""
    optimizer = get_optimizer(case.optimizer)
    tracks = {"definition": _Track(optimizer.update)}
    tracks.update({name: _Track(update, "convention", note) for name, note, update in optimizer.conventions})
    tracks.update({name: _Track(update, "slip", hint, per_tensor=name == "clip_per_tensor")
                   for name, hint, update in optimizer.slips})
    tracks["not_zeroed"] = _Track(optimizer.update, "slip", NOT_ZEROED, accumulate=True)
    if "b1" in optimizer.hyper:
        tracks["stuck_counter"] = _Track(optimizer.update, "slip", STUCK, stuck=True)
    return tracks


def judge_update(case, tracks, params, grads, got, t):
    """Rows for the candidate's theta after step ``t`` (``got``) against the definition's update of
    ``params`` with ``grads``; (rows, the first convention that passes every row or None, the hints of
    the slips that do)."""
    optimizer = get_optimizer(case.optimizer)
    dtype = case.graph_case.dtype
    results, defined = {}, True
    for name, track in tracks.items():
        want = track.step(optimizer, params, grads, case.hyper, t, dtype)
        results[name] = [compare_tensor(k, got.get(k), want[k][0], want[k][1], dtype) for k in params]
        if name == "definition":
            defined = all(np.all(np.isfinite(want[k][0])) for k in params)
    rows = results.pop("definition")
    passing = [n for n, r in results.items() if all(x["status"] == "pass" for x in r)]
    convention = next((n for n in passing if tracks[n].kind == "convention"), None)
    return rows, convention, [tracks[n].note for n in passing if tracks[n].kind == "slip"], defined


def judge_steps(case, step_fn):
    """Teacher-forced training with a ``step`` candidate: K steps, each judged. Returns a list of
    per-step dicts {"step", "loss", "rows", "class"} up to and including the first wrong step."""
    dtype = case.graph_case.dtype
    params = {k: np.asarray(v).copy() for k, v in case.params.items()}
    state, tracks, log = None, _tracks(case), []
    for t in range(1, case.steps + 1):
        loss, grads = true_gradient(case, params)
        grads = {k: np.asarray(g).astype(dtype) for k, g in grads.items()}
        given = ({k: v.copy() for k, v in params.items()}, {k: v.copy() for k, v in grads.items()})
        try:
            new, state = step_fn(given[0], given[1], state, dict(case.hyper))
        except (Unsupported, CandidateFatal):                # declined, or a program that cannot run: not a step
            raise
        except Exception as exc:                            # the candidate's fault is a verdict
            log.append({"step": t, "loss": loss, "class": "bug",
                        "rows": [{"tensor": "step", "status": "bug", "message": f"raised {type(exc).__name__}: {exc}"}]})
            return log
        got = {k: np.asarray(v, dtype=np.float64) for k, v in (new or {}).items()}
        rows, convention, hints, defined = judge_update(case, tracks,
                                                        {k: v.astype(np.float64) for k, v in params.items()},
                                                        {k: g.astype(np.float64) for k, g in grads.items()}, got, t)
        if not defined:                   # the rule itself is undefined here (Adam's 0/0 with eps = 0): stop
            log.append({"step": t, "loss": loss, "class": "undefined", "hints": [], "rows": [
                {"tensor": "update", "status": "undefined",
                 "message": f"the {case.optimizer} update itself is not finite at step {t} (0/0 or an overflow, "
                            f"e.g. eps = 0 with a zero gradient): the run stops here, not judged further"}]})
            return log
        mutated = [k for k in params if not np.array_equal(given[1][k], grads[k])]
        rows += [{"tensor": "d" + k, "status": "bug", "message": "the step overwrote the gradient it was given"}
                 for k in mutated]
        bad = any(r["status"] == "bug" for r in rows)
        cls = "bug" if bad and (convention is None or mutated) else ("convention" if bad else "pass")
        log.append({"step": t, "loss": loss, "rows": rows, "class": cls, "convention": convention if bad else None,
                    "hints": hints if cls == "bug" else []})
        if cls == "bug":
            return log
        params = {k: np.asarray(got[k]).astype(dtype) for k in params}
    return log
