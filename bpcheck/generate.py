"""The cases of a run: ``examples`` plain cases per loss x activation x dtype cell, plus edge cases.

``generate_cases(seed, examples, ...)`` draws with ``bpcheck.strategies``'
recipe from a NumPy generator seeded by (seed, cell, index): the same
arguments give the same cases, and a cell's cases do not depend on which other
cells are drawn. In each cell the cell's activation is put on at least one
layer; depths step through 1..max_depth across the grid. Ids look like
``c0042-mse-tanh-float32``.

Then the edge cases, ``edge_share`` of the whole run (default 40%): the edge
families (``strategies.EDGE_FAMILIES``) in turn, in rounds of one case per
family. Round t gives family f the loss (t + f) mod L and the activation
(t + f) mod A, so every round meets every loss (up to 8 of them: a
float64-only run of 47 edge cases still draws softmax logits near the exp
overflow), every family meets every loss within L rounds and every activation
within A, and a (family, loss) pair's next visit takes the other dtype. A bug
that shows only for softmax logits near the exp overflow, or only at an exact
zero of leaky_relu, is drawn on purpose, not by luck. Their
ids look like ``e0007-exp_overflow-mse-elu-float64``; ``meta`` records seed,
family and cell.

``Support`` is what an implementation accepts; cells it cannot take are left
out, and the activations it lacks never appear in other cells' hidden layers,
so ``examples`` means that many *checked* cases per supported cell.
"""
import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from bpcheck import strategies as bst
from bpcheck.spec import ACTIVATIONS, DTYPES, LAST_ACTIVATION, LOSSES


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
                   edge_share=bst.EDGE_SHARE, support=None, start=0):
    """``examples`` plain cases per supported cell and the edge cases (see the module docstring).
    ``start`` offsets the per-cell index (and the edge sequence), so a second call continues the
    same sequence with new cases."""
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
            case = _draw(seed, "plain", loss, act, dtype, depth, k, pool)
            case.id = f"c{k * len(cells) + c:04d}-{loss}-{act}-{dtype}"
            cases.append(case)
    if not cells or not edge_share:
        return cases
    per_example = len(cells) * edge_share / (1 - edge_share)
    first, last = round(start * per_example), round((start + examples) * per_example)
    cell_losses = [l for l in losses if any(c[0] == l for c in cells)]
    cell_dtypes = [d for d in dtypes if any(c[2] == d for c in cells)]
    families = bst.EDGE_FAMILIES
    for j in range(first, last):
        f, t = j % len(families), j // len(families)        # family, round
        family, n_losses = families[f], len(cell_losses)
        loss = cell_losses[(t + f) % n_losses]              # every round meets every loss (up to 8)
        act = pool[(t + f) % len(pool)]
        dtype = cell_dtypes[(t // n_losses + f) % len(cell_dtypes)]   # a pair's next visit: the other dtype
        if (loss, act, dtype) not in cells:        # e.g. a loss whose last activation is not supported
            act = next((a for l, a, d in cells if l == loss and d == dtype), None)
            if act is None:
                continue
        depth = _depth(loss, act, t % max_depth + 1)
        case = _draw(seed, family, loss, act, dtype, depth, j, pool)
        case.id = f"e{j:04d}-{family}-{loss}-{act}-{dtype}"
        cases.append(case)
    return cases


def _depth(loss, act, depth):
    """At least 2 layers where the loss fixes the last activation and ``act`` needs a hidden layer."""
    return 2 if depth == 1 and LAST_ACTIVATION.get(loss, act) != act else depth


def _draw(seed, family, loss, act, dtype, depth, index, pool):
    d = bst.NumpyDraws(np.random.default_rng(_seed(seed, family, loss, act, dtype, index)))
    spec = bst.draw_spec(d, family, activations=pool, losses=[loss], dtypes=[dtype],
                         min_depth=depth, max_depth=depth, force=act)
    case = bst.draw_case(d, spec, family, focus=act)
    case.meta = {"seed": seed, "index": index, "family": family,
                 "cell": {"loss": loss, "activation": act, "dtype": dtype}}
    return case


def examples_for(min_cases, examples, n_cells):
    """Examples per cell so that at least ``min_cases`` cases are drawn over ``n_cells`` cells."""
    if n_cells == 0:
        return examples
    return max(examples, math.ceil(min_cases / n_cells))
