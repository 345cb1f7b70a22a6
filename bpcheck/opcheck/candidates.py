"""Ways in: a CS231n-style layers module, a PyTorch callable, a JAX function, or a record's own built-ins.

Each ``Candidate`` has ``run(op, case) -> {"out": array, "grads": {input: array}, "mutated": [names]}``
and raises ``CandidateError`` when the code raises or replies with something that is not arrays.

- ``cs231n(module)``: the record's CS231n names (docs/layers_contract.md), ``forward(..) -> (out,
  cache)`` then ``backward(cotangent, cache)``; for a loss without a backward function (CS231n's
  ``softmax_loss(x, y) -> (loss, dx)``) the cotangent is folded in: dx times the scalar cotangent.
- ``torch_function(fn)``: ``fn(*inputs, *constants, **hyper) -> out`` on tensors; bpcheck calls
  ``torch.autograd.grad(out, inputs, cotangent)``, so a ``torch.autograd.Function.apply`` works as is.
- ``jax_function(fn)``: the same signature on JAX arrays; bpcheck calls ``jax.vjp`` (a
  ``jax.custom_vjp`` works as is). float64 is enabled before any array is made.
- ``builtin(op, "torch" | "jax")``: the record's binding to the framework's own built-ins (the oracles).

Every call gets fresh copies of the case's arrays; afterwards the inputs are compared with the case's and
any the code overwrote are named in ``mutated``.
"""
import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np

__all__ = ["Candidate", "CandidateError", "CandidateFatal", "Unsupported", "cs231n", "torch_function", "jax_function", "builtin", "load_module",
           "cs231n_backward"]


class CandidateError(Exception):
    """The candidate raised, or returned something that is not the op's output and gradients."""


class CandidateFatal(CandidateError):
    """The candidate cannot be run at all (a program with no hello line, one that hangs twice in a
    row): the run stops and says why instead of spending a timeout on every case."""


class Unsupported(Exception):
    """The case is outside what the candidate takes: it raised NotImplementedError, a framework built-in
    refuses it (a documented limit), or a CS231n-style module was not declared ``extended``."""


class Candidate:
    def __init__(self, name, call, close=None):
        self.name, self._call, self._close = name, call, close

    def close(self):
        """Release what the candidate holds (a running program); a no-op for Python callables."""
        if self._close is not None:
            self._close()

    def run(self, op, case):
        given = {k: v.copy() for k, v in {**case.inputs, **case.constants}.items()}
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):   # the candidate's own noise
                warnings.simplefilter("ignore")
                out, grads = self._call(op, case, given)
        except (CandidateError, Unsupported):
            raise
        except NotImplementedError as exc:
            raise Unsupported(f"{self.name}: {exc or 'not implemented'}") from None
        except Exception as exc:                          # the candidate's fault is a verdict
            raise CandidateError(f"{self.name} raised {type(exc).__name__}: {exc}") from None
        before = {**case.inputs, **case.constants}
        mutated = [k for k, v in given.items()
                   if not isinstance(v, np.ndarray) or not np.array_equal(v, before[k], equal_nan=True)]
        return {"out": _array(out, "out", self.name),
                "grads": {k: (None if g is None else _array(g, "d" + k, self.name)) for k, g in grads.items()},
                "mutated": mutated}


def _array(value, what, who):
    try:
        return np.asarray(value, dtype=np.float64) if not hasattr(value, "detach") else \
            value.detach().cpu().double().numpy()
    except (TypeError, ValueError) as exc:
        raise CandidateError(f"{who}: {what} is not an array of numbers ({exc})") from None


def load_function(target):
    """The callable ``FN`` of ``FILE.py:FN`` (or ``module.name:FN``); ValueError saying what is wrong."""
    path, sep, name = str(target).rpartition(":")
    if not sep or not path or not name:
        raise ValueError(f"{target!r}: expected FILE.py:FUNCTION")
    fn = getattr(load_module(path), name, None)
    if not callable(fn):
        raise ValueError(f"{path} has no function {name!r}")
    return fn


def load_module(path_or_name):
    """A module from a file path (``layers.py``; its folder is put on ``sys.path`` so that it can import the
    modules beside it) or an importable name (``cs231n.layers``)."""
    path = Path(path_or_name)
    if path.suffix == ".py":
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        folder = str(path.resolve().parent)
        if folder not in sys.path:                 # the file's own folder, so it imports its siblings
            sys.path.append(folder)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ValueError(f"{path}: importing it raised {type(exc).__name__}: {exc}") from None
        return module
    try:
        return importlib.import_module(str(path_or_name))
    except Exception as exc:
        raise ValueError(f"cannot import {path_or_name} ({type(exc).__name__}: {exc})") from None


def cs231n(module, name=None, extended=False):
    """A CS231n-style layers module (or its file path). Without ``extended``, cases whose
    hyper-parameters CS231n's own signatures do not take (a stride or padding pair, dilation) are
    declined as ``Unsupported``; ``extended=True`` says the module follows docs/layers_contract.md's
    extensions."""
    if isinstance(module, (str, Path)):
        name, module = name or str(module), load_module(module)

    def call(op, case, given):
        if op.cs231n is None:
            raise CandidateFatal(f"{op.name} has no CS231n-style signature (check it with --torch, --jax or --exec)")
        fwd_name, bwd_name, invoke, unpack = op.cs231n[:4]
        if not extended and len(op.cs231n) > 4 and op.cs231n[4] is not None and not op.cs231n[4](case.hyper):
            raise Unsupported(f"{op.name} {case.hyper}: beyond CS231n's signature (pass extended)")
        fwd = getattr(module, fwd_name, None)
        if fwd is None:
            raise CandidateFatal(f"{name or module.__name__} defines no {fwd_name}")
        a = {k: given[k] for k in case.inputs}
        c = {k: given[k] for k in case.constants}
        if bwd_name is None:                              # forward returns (loss, grads)
            out, *rest = invoke(fwd, a, c, dict(case.hyper))
            grads = unpack(rest)
            return out, {k: None if g is None else np.asarray(g) * case.cotangent for k, g in grads.items()}
        bwd = getattr(module, bwd_name, None)
        if bwd is None:
            raise CandidateFatal(f"{name or module.__name__} defines no {bwd_name}")
        reply = invoke(fwd, a, c, dict(case.hyper))
        if not isinstance(reply, tuple) or len(reply) != 2:
            raise CandidateError(f"{fwd_name} returned {type(reply).__name__}, not (out, cache)")
        out, cache = reply
        grads = unpack(cs231n_backward(op, bwd, case.cotangent.copy(), cache))
        return out, grads

    return Candidate(name or getattr(module, "__name__", "layers"), call)


def cs231n_backward(op, bwd, dout, cache):
    """Call a CS231n-style backward: ``bwd(dout, cache)``, or, for a record whose output joins several
    of the forward's outputs (``cs231n[5]``, e.g. lstm_step's [next_h | next_c]), the record's own
    ``backward(bwd, dout, cache)``, which splits the cotangent into the backward's arguments."""
    split = op.cs231n[5] if len(op.cs231n) > 5 else None
    return bwd(dout, cache) if split is None else split(bwd, dout, cache)


def _torch_call(fn, name):
    import torch

    def call(op, case, given):
        a = {k: torch.from_numpy(given[k]).requires_grad_(True) for k in case.inputs}
        c = {k: torch.from_numpy(given[k]) for k in case.constants}
        out = fn(a, c, dict(case.hyper))
        if not isinstance(out, torch.Tensor):
            raise CandidateError(f"{name} returned {type(out).__name__}, not a tensor")
        grads = torch.autograd.grad(out, list(a.values()), torch.from_numpy(case.cotangent.copy()),
                                    allow_unused=True)
        for k, t in a.items():                            # what autograd saw is what the caller got
            given[k] = t.detach().numpy()
        return out, {k: (np.zeros(case.inputs[k].shape) if g is None else g) for k, g in zip(a, grads)}

    return call


def _jax_call(fn, name):
    import jax
    jax.config.update("jax_enable_x64", True)

    def call(op, case, given):
        names = list(case.inputs)
        c = {k: jax.numpy.asarray(given[k]) for k in case.constants}
        out, pullback = jax.vjp(lambda *xs: fn(dict(zip(names, xs)), c, dict(case.hyper)),
                                *[jax.numpy.asarray(given[k]) for k in names])
        grads = pullback(jax.numpy.asarray(case.cotangent).astype(out.dtype))
        return np.asarray(out), {k: np.asarray(g) for k, g in zip(names, grads)}

    return call


def torch_function(fn, name=None):
    """``fn(*inputs, *constants, **hyper) -> tensor`` (inputs in the record's order)."""
    name = name or getattr(fn, "__name__", "torch function")
    return Candidate(name, _torch_call(lambda a, c, h: fn(*a.values(), *c.values(), **h), name))


def jax_function(fn, name=None):
    """``fn(*inputs, *constants, **hyper) -> array`` (inputs in the record's order)."""
    name = name or getattr(fn, "__name__", "jax function")
    return Candidate(name, _jax_call(lambda a, c, h: fn(*a.values(), *c.values(), **h), name))


def builtin(op, framework):
    """The record's binding to ``framework``'s own built-ins ("torch" or "jax")."""
    binding = getattr(op, framework)
    if binding is None:
        raise ValueError(f"{op.name} has no {framework} binding")
    limit = dict(op.limits).get(framework)
    if limit is not None:
        inner = binding

        def binding(fw, a, c, h):                 # a documented refusal of the framework: not judged
            reason = limit(a, c, h)
            if reason:
                raise Unsupported(f"{framework} {op.name}: {reason}")
            return inner(fw, a, c, h)
    if framework == "torch":
        import torch
        return Candidate(f"torch {op.name}", _torch_call(lambda a, c, h: binding(torch, a, c, h), framework))
    import jax
    import jax.nn  # noqa: F401  (the bindings use jax.nn, jax.numpy, jax.lax)
    return Candidate(f"jax {op.name}", _jax_call(lambda a, c, h: binding(jax, a, c, h), framework))
