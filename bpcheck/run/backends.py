"""Backends: everything that computes a Result, behind one adapter path.

The reference, the oracles and third-party code all expose the plain-function
contract ``backprop(spec, params, x, y) -> dict``; ``PythonBackend`` wraps any
such function, ``load_target`` finds one from ``module:function`` or
``path/to/file.py:function``. Each call gets fresh copies of the arrays, so an
implementation cannot corrupt the case, and its reply is validated.
"""
import importlib
import importlib.util
import sys
from pathlib import Path

from bpcheck.core.spec import ResultError, validate_result


class Unsupported(Exception):
    """The implementation declined this case (it raised NotImplementedError)."""


class AdapterError(Exception):
    """The implementation raised, crashed, hung or replied with garbage."""


class PythonBackend:
    """A Python function called in this process (``--in-process``: fast, for trusted code).

    Each call gets fresh copies of the case's arrays; after the call they are compared
    with the case, and the names of the ones the function overwrote are returned in
    the result's ``mutated``. ``timeout`` (seconds, main thread only) interrupts
    Python code that runs too long with SIGALRM; code stuck in C cannot be stopped
    in-process -- that is what the default worker process is for.
    """

    def __init__(self, fn, name, timeout=None):
        self.fn, self.name, self.timeout = fn, name, timeout

    def run(self, case):
        import numpy as np
        args = ({**case.spec, "layers": [dict(l) for l in case.spec["layers"]]},
                {k: v.copy() for k, v in case.params.items()}, case.x.copy(), case.y.copy())
        try:
            with _alarm(self.timeout, self.name):
                result = self.fn(*args)
        except NotImplementedError as exc:
            raise Unsupported(f"{self.name}: {exc or 'not implemented'}") from None
        except AdapterError:
            raise
        except (Exception, SystemExit, GeneratorExit) as exc:  # the target's bug is a verdict, not our exit
            raise AdapterError(f"{self.name} raised {type(exc).__name__}: {exc}") from None
        try:
            result = validate_result(result, case, who=self.name)
        except ResultError as exc:
            raise AdapterError(str(exc)) from None
        given = [("x", case.x, args[2]), ("y", case.y, args[3])]
        given += [(f"params[{k!r}]", v, args[1].get(k)) for k, v in case.params.items()]
        result["mutated"] = [name for name, before, after in given
                             if not isinstance(after, np.ndarray) or after.shape != before.shape
                             or not np.array_equal(after, before, equal_nan=True)]
        return result


    def trace_lines(self, case):
        """The (file, line) pairs of the function's own source file that a call on ``case`` runs."""
        import inspect
        try:
            files = {inspect.getsourcefile(self.fn)}
        except TypeError:
            return set()
        args = ({**case.spec, "layers": [dict(l) for l in case.spec["layers"]]},
                {k: v.copy() for k, v in case.params.items()}, case.x.copy(), case.y.copy())
        return traced_call(self.fn, args, files)[1]


def traced_call(fn, args, files):
    """(result or exception, {(file, line)}) of ``fn(*args)`` with the lines run in ``files``."""
    seen = set()

    def tracer(frame, event, arg):
        if frame.f_code.co_filename not in files:
            return None
        if event == "line":
            seen.add((frame.f_code.co_filename, frame.f_lineno))
        return tracer
    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        outcome = fn(*args)
    except Exception as exc:           # a failing call may raise; its lines still count
        outcome = exc
    finally:
        sys.settrace(previous)
    return outcome, seen


class _alarm:
    """SIGALRM after ``seconds`` raising AdapterError (no-op off the main thread or without a limit)."""

    def __init__(self, seconds, name):
        import threading
        self.seconds, self.name = seconds, name
        self.active = bool(seconds) and threading.current_thread() is threading.main_thread()

    def __enter__(self):
        if self.active:
            import signal

            def ring(signum, frame):
                raise AdapterError(f"{self.name}: no result within the timeout of {self.seconds:g} s")
            self.previous = signal.signal(signal.SIGALRM, ring)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        if self.active:
            import signal
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)


BUILTIN = {
    "reference": "reference.network:backprop",
    "torch": "oracles.torch_oracle:backprop",
    "jax": "oracles.jax_oracle:backprop",
    "numeric": "oracles.numeric:backprop",
}


def load_function(target):
    """Resolve ``module:function``, ``path/to/file.py:function`` or a builtin name."""
    target = BUILTIN.get(target, target)
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"target {target!r}: expected module:function or path/to/file.py:function")
    if module_name.endswith(".py"):
        path = Path(module_name).resolve()
        if not path.is_file():
            raise ValueError(f"target {target!r}: no such file {path}")
        spec = importlib.util.spec_from_file_location(f"bpcheck_target_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ValueError(f"target {target!r}: importing {path.name} raised "
                             f"{type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise ValueError(f"target {target!r}: cannot import {module_name} "
                             f"({type(exc).__name__}: {exc})") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"target {target!r}: {module_name} has no function {attr!r}")
    return fn


def load_target(target, name=None, timeout=None):
    """An in-process backend for a target string (``module:function``, ``file.py:function``, a builtin)."""
    return PythonBackend(load_function(target), name or target, timeout)
