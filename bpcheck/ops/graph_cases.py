"""A whole-network case: an architecture's graph at one size, its leaves, constants and cotangent.

``draw_graph_case(arch, family, dtype, seed, size)`` asks the architecture (``bpcheck.ops.architectures``)
for its graph and values; the cotangent of the output is drawn as an op case's is
(``bpcheck.ops.cases``): never 1 in ``plain``, 1 in ``uniform_cotangent``.
"""
from dataclasses import dataclass

import numpy as np

from bpcheck.ops import architectures
from bpcheck.ops.algebra import Plain
from bpcheck.ops.cases import _cotangent, _rng
from bpcheck.ops.graph import forward

__all__ = ["GraphCase", "draw_graph_case"]


@dataclass
class GraphCase:
    arch: str
    dtype: str
    family: str
    seed: int
    size: dict
    graph: object
    values: dict
    constants: dict
    cotangent: np.ndarray

    @property
    def hyper(self):
        return {n.name: dict(n.hyper) for n in self.graph.nodes}

    def describe(self):
        dims = ", ".join(f"{k}={v}" for k, v in self.size.items())
        return f"{self.arch} {self.dtype} [{self.family}] seed {self.seed}; {dims}"


def draw_graph_case(arch, family, dtype, seed, size=None):
    """A case of ``arch`` (name or Architecture); ``size`` defaults to one of its sizes, drawn."""
    arch = architectures.get(arch) if isinstance(arch, str) else arch
    rng = _rng("graph", arch.name, family, dtype, seed)
    if size is None:
        size = arch.sizes[int(rng.integers(1, len(arch.sizes)))]
    graph = arch.build(size, family)
    values, constants = arch.draw(rng, family, dtype, size)
    out = forward(graph, values, constants, Plain())[0][graph.output]
    return GraphCase(arch.name, dtype, family, seed, dict(size), graph, values, constants,
                     _cotangent(rng, np.shape(out), dtype, family))
