"""What bpcheck knows about one op, in one record.

A record is the op's definition written once (forward and vector-Jacobian
product against the ``bpcheck.ops.algebra`` namespace, so the same code is the
certified truth, the rounding model and a float64 evaluator), how to draw its
cases (shapes, hyper-parameters, inputs; the edge families where it breaks), its
frameworks' own built-ins, its CS231n-style signature, its ties, and its
typical slips (wrong VJPs a person writes, which give the diagnosis its hints
and the zoo its generated members). Everything else -- the truth, the tolerance,
the judgement, the adapters, the tests -- derives from the records in
``bpcheck.ops.catalog``.
"""
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["Op", "Slip", "Convention", "Draw", "COMMON_FAMILIES"]

# Families every op has: a non-uniform cotangent on ordinary inputs, and an all-ones cotangent (what
# `.sum().backward()` sends; a normalisation with gamma constant along its axes then has an exact input
# gradient of 0). A record's draw treats a family it does not name as plain.
COMMON_FAMILIES = ("plain", "uniform_cotangent")


@dataclass(frozen=True)
class Draw:
    """One drawn case before its cotangent: float inputs (differentiated), constants (labels, indices,
    masks; not differentiated) and hyper-parameters (JSON values)."""
    inputs: dict
    constants: dict = field(default_factory=dict)
    hyper: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Slip:
    """A typical wrong VJP: ``vjp(ns, a, c, h, dout) -> {name: gradient}`` for the tensors it gets wrong,
    and the hint said when a candidate's failing tensor matches it."""
    name: str
    hint: str
    vjp: Callable


@dataclass(frozen=True)
class Convention:
    """A framework's documented variant of the definition, described in ``note``: ``forward`` and
    ``vjp`` as in ``Op``. A candidate wrong against the truth and right against a convention's truth is
    class ``convention`` (passes, with the note). ``framework``: whose convention it is (one
    framework's conventions hold together); ``source``: where it is documented; ``arbiter``: the
    variant's name in the dense arbiter's catalog (``oracles.arb_oracle``), for an activation in a
    dense spec (``bpcheck.judge.classify`` re-evaluates the spec with it)."""
    name: str
    note: str
    forward: Callable
    vjp: Callable
    framework: str = None
    source: str = None
    arbiter: str = None


@dataclass(frozen=True)
class Op:
    """One op. ``forward(ns, a, c, h) -> out`` and ``vjp(ns, a, c, h, dout) -> {input: gradient}`` with
    ``a`` the differentiable inputs (ns arrays), ``c`` the constants (NumPy), ``h`` the hyper-parameters.
    ``draw(rng, family, dtype) -> Draw`` makes a case of ``family`` (one of ``families``; each is drawn
    on every run). ``torch(torch, a, c, h)`` / ``jax(jax, a, c, h)`` build the output from the
    framework's own built-ins. ``cs231n = (forward name, backward name, call, grads)``: ``call(fwd, a, c,
    h) -> (out, cache)`` calls a CS231n-style forward, ``grads(result) -> {input: gradient}`` names what
    its backward returns; a fifth entry ``supported(hyper)`` (None: always) says which cases CS231n's own
    signature takes, a sixth ``backward(bwd, dout, cache)`` calls a backward that takes the output's
    parts (lstm_step_backward(dnext_h, dnext_c, cache)) instead of ``bwd(dout, cache)``. ``ties(a, c, h)`` lists, for an op with a max, each output entry's tied
    argmax positions (flat indices into the input), for class ``tie``. ``shrink(draw)`` yields smaller
    draws of the same kind. ``kinks(a, c, h) -> {input: (mask, lo, hi)}`` marks entries at a kink,
    where any derivative between the one-sided ``lo`` and ``hi`` is a valid subgradient (class
    ``kink``). ``conventions``: ``Convention`` records. ``limits = ((framework, refuses(a, c, h) -> reason or None), ...)``: cases a
    framework's built-in documents it refuses (not judged; the reason is reported). ``locate(case, tensor, g,
    t, allowed) -> [words]`` says where inside a wrong tensor the error sits (a recurrent op: the time
    steps and gates), added to the failing row's hints. ``running``: the op's step of the dense chain's
    running error bound (``bpcheck.ops.running.Rule``), for the ops a dense spec compiles to."""
    name: str
    definition: str
    inputs: tuple
    forward: Callable
    vjp: Callable
    draw: Callable
    families: tuple
    constants: tuple = ()
    torch: Callable = None
    jax: Callable = None
    cs231n: tuple = None
    ties: Callable = None
    kinks: Callable = None
    slips: tuple = ()
    shrink: Callable = None
    conventions: tuple = ()
    limits: tuple = ()
    locate: Callable = None
    running: object = None
