"""The cases of a run: ``examples`` per loss x activation x dtype cell, a share from the edge families.

``generate_cases(seed, examples, ...)`` draws with ``bpcheck.strategies``'
recipe from a NumPy generator seeded by (seed, cell, index): the same
arguments give the same cases, and a cell's cases do not depend on which other
cells are drawn. In each cell the cell's activation is put on at least one
layer; depths step through 1..max_depth across the grid. A share
``edge_share`` of the cases (default 25%) comes from the edge families
(``strategies.EDGE_FAMILIES``), the rest are plain. Ids look like
``c0042-mse-tanh-float32``; ``meta`` records seed, family and cell.

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
    """``examples`` cases per supported cell (see the module docstring). ``start`` offsets the
    per-cell index, so a second call continues the same sequence with new cases."""
    check_choices(losses, activations, dtypes, max_depth)
    support = support or Support()
    cells = support.cells(losses, activations, dtypes, max_depth)
    pool = [a for a in activations if a in support.activations]
    cases = []
    for k in range(start, start + examples):
        for c, (loss, act, dtype) in enumerate(cells):
            rng = np.random.default_rng(_seed(seed, loss, act, dtype, k))
            d = bst.NumpyDraws(rng)
            family = bst.pick_family(d, edge_share)
            depth = (k + c) % max_depth + 1
            if depth == 1 and LAST_ACTIVATION.get(loss, act) != act:
                depth = 2                  # the loss fixes the last activation: act needs a hidden layer
            spec = bst.draw_spec(d, family, activations=pool, losses=[loss], dtypes=[dtype],
                                 min_depth=depth, max_depth=depth, force=act)
            case = bst.draw_case(d, spec, family)
            case.id = f"c{len(cases) + start * len(cells):04d}-{loss}-{act}-{dtype}"
            case.meta = {"seed": seed, "index": k, "family": family,
                         "cell": {"loss": loss, "activation": act, "dtype": dtype}}
            cases.append(case)
    return cases


def examples_for(min_cases, examples, n_cells):
    """Examples per cell so that at least ``min_cases`` cases are drawn over ``n_cells`` cells."""
    if n_cells == 0:
        return examples
    return max(examples, math.ceil(min_cases / n_cells))
