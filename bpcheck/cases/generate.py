"""The cases of a run: ``examples`` plain cases per loss x activation x dtype cell, plus edge cases.

``generate_cases(seed, examples, ...)`` draws with ``bpcheck.cases.strategies``'
recipe from a NumPy generator seeded by (seed, cell, index): the same
arguments give the same cases, and a cell's cases do not depend on which other
cells are drawn. In each cell the cell's activation is put on at least one
layer; depths step through 1..max_depth across the grid. Ids look like
``c0042-mse-tanh-float32``.

Then the edge cases: a covering grid, drawn whole in every round: one round at
least, more where ``edge_share``, a floor on the edge cases' share of the run,
asks for more (``_rounds``; a call with ``start`` continues the same rounds). For every edge family (``strategies.EDGE_FAMILIES``) and
dtype, ``edge_grid`` gives every supported activation a case where it is the
activation of a hidden layer *and* of the output layer, and every supported
loss a case of its own: every (family x activation x dtype) at a hidden layer
and at the output, and every (family x loss x dtype), is met in every run, on
every seed. A bug that shows only for softmax logits past the exp overflow, or
only at an exact zero of silu, is drawn on purpose, not by luck; ``coverage``
counts what a run met. Their ids look like ``e0007-exp_overflow-mse-elu-float64``;
``meta`` records seed, family and cell.

``Support`` is what an implementation accepts; cells it cannot take are left
out, and the activations it lacks never appear in other cells' hidden layers,
so ``examples`` means that many *checked* cases per supported cell.
"""
import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from bpcheck.cases import strategies as bst
from bpcheck.core.spec import ACTIVATIONS, DTYPES, LAST_ACTIVATION, LOSSES


@dataclass
class Support:
    """Activations, losses and dtypes an implementation takes; ``declined`` says why the rest were not."""
    activations: tuple = ACTIVATIONS
    losses: tuple = LOSSES
    dtypes: tuple = DTYPES
    declined: dict = field(default_factory=dict)     # feature ("activation gelu") -> its message

    def cells(self, losses=LOSSES, activations=ACTIVATIONS, dtypes=DTYPES, max_depth=6):
        """The supported cells (loss, activation, dtype) among those asked for, in a fixed order."""
        out = []
        for loss in losses:
            need = LAST_ACTIVATION.get(loss)
            if loss not in self.losses or (need and need not in self.activations):
                continue
            for act in activations:
                if act not in self.activations or (max_depth == 1 and need and need != act):
                    continue
                out += [(loss, act, dtype) for dtype in dtypes if dtype in self.dtypes]
        return out


def check_choices(losses, activations, dtypes, max_depth):
    """ValueError naming an unknown loss, activation or dtype, or a depth out of range."""
    for name, chosen, known in (("loss", losses, LOSSES), ("activation", activations, ACTIVATIONS),
                                ("dtype", dtypes, DTYPES)):
        unknown = [v for v in chosen if v not in known]
        if unknown or not chosen:
            raise ValueError(f"{name}s: unknown {unknown} (choose from {', '.join(known)})"
                             if unknown else f"{name}s: none given")
    if not 1 <= max_depth <= 64:
        raise ValueError(f"max_depth {max_depth}: must be 1..64")


def _seed(*parts):
    """A stable 64-bit seed from ``parts`` (Python's hash() of a str changes per process)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


def generate_cases(seed, examples, *, losses=LOSSES, activations=ACTIVATIONS, dtypes=DTYPES, max_depth=6,
                   edge_share=bst.EDGE_SHARE, support=None, start=0, max_params=None):
    """``examples`` plain cases per supported cell and the edge cases (see the module docstring).
    ``start`` offsets the per-cell index (and the edge sequence), so a second call continues the
    same sequence with new cases. ``max_params``: networks narrowed to at most that many
    parameters (``strategies.draw_spec``), for an implementation that takes no bigger ones."""
    check_choices(losses, activations, dtypes, max_depth)
    if not 0 <= edge_share < 1:
        raise ValueError(f"edge_share {edge_share}: must be in [0, 1)")
    support = support or Support()
    cells = support.cells(losses, activations, dtypes, max_depth)
    pool = [a for a in activations if a in support.activations]
    cases = []
    for k in range(start, start + examples):
        for c, (loss, act, dtype) in enumerate(cells):
            depth = _depth(loss, act, (k + c) % max_depth + 1)
            case = _draw(seed, "plain", loss, act, dtype, depth, k, pool, max_params=max_params)
            case.id = f"c{k * len(cells) + c:04d}-{loss}-{act}-{dtype}"
            cases.append(case)
    if not cells or not edge_share:
        return cases
    grid = edge_grid(cells, pool)
    per_round = len(grid) * len(bst.EDGE_FAMILIES)
    for t in range(_rounds(start, len(cells), edge_share, per_round),
                   _rounds(start + examples, len(cells), edge_share, per_round)):
        for f, family in enumerate(bst.EDGE_FAMILIES):
            for k, (loss, act, dtype, last) in enumerate(grid):
                j = (t * len(bst.EDGE_FAMILIES) + f) * len(grid) + k
                depth = max(2, (t + f + k) % max_depth + 1) if max_depth >= 2 else 1
                case = _draw(seed, family, loss, act, dtype, depth, j, pool, last=last, max_params=max_params)
                case.id = f"e{j:04d}-{family}-{loss}-{act}-{dtype}"
                cases.append(case)
    return cases


def _rounds(examples, n_cells, edge_share, per_round):
    """Edge rounds that go with the first ``examples`` examples per cell: at least one (every run meets
    the whole grid), more where ``edge_share`` -- a floor on the edge cases' share -- asks for more."""
    if not examples or not per_round:
        return 0
    return max(1, math.ceil(examples * n_cells * edge_share / (1 - edge_share) / per_round - 1e-9))


def edge_grid(cells, pool):
    """One round of edge cells per family: [(loss, activation, dtype, last)] such that every supported
    activation is the focus of a hidden layer *and* (``last``) the output layer's activation, and
    every supported loss is met, in every dtype. Each activation goes with a loss that leaves the
    output activation free (sse, half_sse, mse, quadratic, in turn), where one is supported; each
    loss that fixes it (BCE: sigmoid, the logits losses: identity) gets one more cell, its focus
    activation in turn."""
    out = []
    for dtype in dict.fromkeys(c[2] for c in cells):
        losses_here = list(dict.fromkeys(c[0] for c in cells if c[2] == dtype))
        free = [l for l in losses_here if l not in LAST_ACTIVATION]
        fixed = [l for l in losses_here if l in LAST_ACTIVATION]
        acts = [a for a in pool if any(c[1] == a and c[2] == dtype for c in cells)]
        for k, act in enumerate(acts):
            losses = free or fixed
            loss = next((losses[(k + n) % len(losses)] for n in range(len(losses))
                         if (losses[(k + n) % len(losses)], act, dtype) in cells), None)
            if loss is not None:
                out.append((loss, act, dtype, act if loss in free else None))
        met = {c[0] for c in out if c[2] == dtype}
        for k, loss in enumerate(l for l in fixed if l not in met):
            act = next((acts[(k + n) % len(acts)] for n in range(len(acts))
                        if (loss, acts[(k + n) % len(acts)], dtype) in cells), None)
            if act is not None:
                out.append((loss, act, dtype, None))
    return out


def coverage(cases):
    """What the edge cases of a run met, against what its cells ask for: {name: {"met", "of",
    "missing"}} for "family x activation x dtype, hidden layer", "... output layer" (only where a
    loss that leaves the output activation free is run) and "family x loss x dtype". ``cases`` are
    Cases or judged records (dicts with "spec" and "meta"; a record counts only if its status is
    "ok": a declined or failed call met nothing)."""
    met = {"hidden": set(), "output": set(), "loss": set()}
    cells = set()
    for c in cases:
        spec, meta = (c["spec"], c.get("meta") or {}) if isinstance(c, dict) else (c.spec, c.meta)
        if meta.get("cell"):
            cells.add((meta["cell"]["loss"], meta["cell"]["activation"], meta["cell"]["dtype"]))
        family = meta.get("family", "plain")
        if family == "plain" or (isinstance(c, dict) and c.get("status") != "ok"):
            continue
        acts = [layer["activation"] for layer in spec["layers"]]
        met["hidden"] |= {(family, a, spec["dtype"]) for a in acts[:-1]}
        if spec["loss"] not in LAST_ACTIVATION:
            met["output"].add((family, acts[-1], spec["dtype"]))
        met["loss"].add((family, spec["loss"], spec["dtype"]))
    fams = bst.EDGE_FAMILIES
    want = {"hidden": {(f, a, d) for f in fams for _, a, d in cells},
            "output": {(f, a, d) for f in fams for l, a, d in cells if l not in LAST_ACTIVATION},
            "loss": {(f, l, d) for f in fams for l, _, d in cells}}
    return {COVERAGE_NAMES[k]: {"met": len(met[k] & want[k]), "of": len(want[k]),
                                "missing": sorted("/".join(m) for m in want[k] - met[k])[:10]} for k in want}


COVERAGE_NAMES = {"hidden": "family x activation x dtype, hidden layer",
                  "output": "family x activation x dtype, output layer",
                  "loss": "family x loss x dtype"}


def _depth(loss, act, depth):
    """At least 2 layers where the loss fixes the last activation and ``act`` needs a hidden layer."""
    return 2 if depth == 1 and LAST_ACTIVATION.get(loss, act) != act else depth


def _draw(seed, family, loss, act, dtype, depth, index, pool, last=None, max_params=None):
    d = bst.NumpyDraws(np.random.default_rng(_seed(seed, family, loss, act, dtype, index)))
    edge = family != "plain"
    spec = bst.draw_spec(d, family, activations=pool, losses=[loss], dtypes=[dtype],
                         min_depth=depth, max_depth=depth, force=None if edge else act,
                         hidden=act if edge else None, last=last, max_params=max_params)
    case = bst.draw_case(d, spec, family, focus=act)
    case.meta = {"seed": seed, "index": index, "family": family,
                 "cell": {"loss": loss, "activation": act, "dtype": dtype}}
    return case


def examples_for(min_cases, examples, n_cells):
    """Examples per cell so that at least ``min_cases`` cases are drawn over ``n_cells`` cells."""
    if n_cells == 0:
        return examples
    return max(examples, math.ceil(min_cases / n_cells))
