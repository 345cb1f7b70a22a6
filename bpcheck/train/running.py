"""Batch norm's running statistics, the state a training loop carries besides the optimizer's.

In training mode batch norm normalises with the batch's own statistics and keeps exponential averages of
them for inference. Per channel c over the batch axes (N for x (N, C); N, H, W for x (N, C, H, W)), with
n values per channel: mean = mean(x), var = mean((x - mean)^2) (biased), var_u = var n / (n - 1). Two
conventions, and the two differ in what ``momentum`` means:

- ``torch`` (torch.nn.BatchNorm1d/2d and F.batch_norm's documentation: "x_new = (1 - momentum) x +
  momentum x_t", default 0.1; "the running variance is computed with the unbiased estimator"):
  running_mean <- (1 - momentum) running_mean + momentum mean, running_var <- (1 - momentum) running_var
  + momentum var_u.
- ``cs231n`` (CS231n's batchnorm_forward: ``running_mean = momentum * running_mean + (1 - momentum) *
  sample_mean``, default 0.9, with the biased sample variance): running_mean <- momentum running_mean +
  (1 - momentum) mean, running_var <- momentum running_var + (1 - momentum) var.

``check_running`` runs K batches through a candidate -- ``fn(x, running_mean, running_var, momentum) ->
(running_mean, running_var)``, or a CS231n-style ``batchnorm_forward`` whose ``bn_param`` it reads back --
each step from the candidate's own running values (teacher forcing), judged against the declared
convention with the rounding model's tolerance; a step right under the other convention's formula, or
with the variance's estimator swapped, says so.
"""
import numpy as np
from flint import ctx

from bpcheck.ops.algebra import Exact, Model
from bpcheck.ops.cases import _rng
from bpcheck.opcheck.judge import compare_tensor

__all__ = ["CONVENTIONS", "check_running", "cs231n_running"]

BITS = 256


def _stats(ns, x, unbiased):
    axes = (0,) if len(x.shape) == 2 else (0, 2, 3)
    n = x.size // x.shape[1]
    mean = ns.mean(x, axes)
    centred = x - mean.reshape(1, -1) if len(x.shape) == 2 else x - mean.reshape(1, -1, 1, 1)
    var = ns.mean(centred * centred, axes)
    return mean, (var * ns.const(n) / ns.const(n - 1) if unbiased else var)


def _torch(ns, x, rm, rv, m, unbiased=True):
    mean, var = _stats(ns, x, unbiased)
    keep, take = ns.const(1 - m), ns.const(m)
    return keep * rm + take * mean, keep * rv + take * var


def _cs231n(ns, x, rm, rv, m, unbiased=False):
    mean, var = _stats(ns, x, unbiased)
    keep, take = ns.const(m), ns.const(1 - m)
    return keep * rm + take * mean, keep * rv + take * var


CONVENTIONS = {"torch": (_torch, 0.1), "cs231n": (_cs231n, 0.9)}
# Slips: (name, hint, update) for each declared convention.
SLIPS = {
    "torch": (("biased_var", "running variance stored biased (1/n): torch stores the unbiased estimate (1/(n-1))",
               lambda ns, x, rm, rv, m: _torch(ns, x, rm, rv, m, unbiased=False)),
              ("cs231n_momentum", "momentum read the CS231n way (momentum keeps the old value): torch's momentum "
                                  "is the weight of the new batch", _cs231n)),
    "cs231n": (("unbiased_var", "running variance stored unbiased (1/(n-1)): CS231n's uses the biased sample "
                                "variance", lambda ns, x, rm, rv, m: _cs231n(ns, x, rm, rv, m, unbiased=True)),
               ("torch_momentum", "momentum read the torch way (momentum weighs the new batch): CS231n's momentum "
                                  "keeps the old value", _torch)),
}


def cs231n_running(module):
    """``fn`` for a CS231n-style layers module: its batchnorm_forward (or spatial_batchnorm_forward for
    4-d x) in training mode, reading the running statistics back from ``bn_param``."""
    def fn(x, running_mean, running_var, momentum):
        name = "batchnorm_forward" if x.ndim == 2 else "spatial_batchnorm_forward"
        c = x.shape[1]
        param = {"mode": "train", "eps": 1e-5, "momentum": momentum,
                 "running_mean": running_mean.copy(), "running_var": running_var.copy()}
        getattr(module, name)(x, np.ones(c, x.dtype), np.zeros(c, x.dtype), param)
        return param["running_mean"], param["running_var"]
    return fn


def _judge(update, x, rm, rv, momentum, got, dtype):
    m = Model(dtype)
    with ctx.workprec(BITS):
        e = Exact(BITS)
        want = update(e, e.input(x), e.input(rm), e.input(rv), momentum)
        want = [np.asarray(Exact.mid(w), dtype=np.float64) for w in want]
    bound = [m.scale(b) for b in update(m, m.input(x), m.input(rm), m.input(rv), momentum)]
    return [compare_tensor(name, g, w, s, dtype) for name, g, w, s in zip(("running_mean", "running_var"), got,
                                                                        want, bound)]


def check_running(fn, convention="torch", *, steps=5, dtype="float32", seed=0, spatial=False, momentum=None):
    """K batches through ``fn``; {"verdict", "steps", "first": {"step", "rows", "hints", "shape"} or None}."""
    update, default = CONVENTIONS[convention]
    momentum = default if momentum is None else momentum
    rng = _rng("running", convention, dtype, seed, spatial)
    c = int(rng.integers(2, 5))
    shape = (int(rng.integers(2, 5)), c, 2, 3) if spatial else (int(rng.integers(2, 6)), c)
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    for t in range(1, steps + 1):
        x = (rng.standard_normal(shape) * rng.uniform(0.5, 3.0) + rng.uniform(-2, 2)).astype(dtype)
        try:
            got = [np.asarray(v, dtype=np.float64) for v in fn(x.copy(), rm.copy(), rv.copy(), momentum)]
        except Exception as exc:                            # the candidate's fault is a verdict
            rows = [{"tensor": "call", "status": "bug", "message": f"raised {type(exc).__name__}: {exc}"}]
            return {"verdict": "fail", "steps": t, "first": {"step": t, "rows": rows, "hints": [], "shape": shape}}
        args = (x.astype(np.float64), rm.astype(np.float64), rv.astype(np.float64), momentum)
        rows = _judge(update, *args, got, dtype)
        if any(r["status"] == "bug" for r in rows):
            hints = [hint for _, hint, slip in SLIPS[convention]
                     if all(r["status"] == "pass" for r in _judge(slip, *args, got, dtype))]
            return {"verdict": "fail", "steps": t, "first": {"step": t, "rows": rows, "hints": hints, "shape": shape}}
        rm, rv = got[0].astype(dtype), got[1].astype(dtype)
    return {"verdict": "pass", "steps": steps, "first": None}
