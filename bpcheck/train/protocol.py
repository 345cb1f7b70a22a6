"""Training steps over the line protocol: ``bpcheck-op/1`` step requests, for an optimizer in any language.

The hello lists the optimizers the program implements, ``"optimizers": ["sgd", "adam", ...]``. Each step
of a run is one request; the program keeps its own state (moments, velocities, the step counter) per
``run``, as a training loop does::

    request  {"id": "9", "train_step": "adam", "run": "3", "t": 1, "dtype": "float32",
              "hyper": {"lr": 0.01, ...}, "params": {"w1": A, ...}, "grads": {"w1": A, ...}}
    reply    {"id": "9", "params": {"w1": A, ...}}

``t`` counts the run's steps from 1 (a program may keep its own counter instead; bpcheck judges what it
does with it). Errors, silence and malformed replies are handled as for op requests
(``bpcheck.opcheck.protocol``).
"""
import itertools
import shlex

import numpy as np

from bpcheck.opcheck.candidates import Unsupported
from bpcheck.opcheck.protocol import _Program
from bpcheck.run.protocol import ResultError, _quote, decode_array, encode_array

__all__ = ["step_program"]

_RUNS = itertools.count(1)


def step_program(command, optimizer, *, timeout=30.0, start_timeout=30.0):
    """(``step(params, grads, state, hyper) -> (params, state)`` backed by the program, ``close``)."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if not argv:
        raise ValueError("--exec: empty command")
    prog = _Program(argv, timeout, start_timeout)

    def step(params, grads, state, hyper):
        run, t = (str(next(_RUNS)), 1) if state is None else (state["run"], state["t"] + 1)
        dtype = next(iter(params.values())).dtype.name
        with prog.lock:
            hello = prog.start()
            if optimizer not in hello.get("optimizers", []) or dtype not in hello["dtypes"]:
                raise Unsupported(f"{prog.command}: its hello line leaves out {optimizer} in {dtype}")
            enc = hello.get("encoding", "decimal")
            reply, line = prog._exchange({"train_step": optimizer, "run": run, "t": t, "dtype": dtype,
                                          "hyper": hyper, "params": {k: encode_array(v, enc) for k, v in params.items()},
                                          "grads": {k: encode_array(v, enc) for k, v in grads.items()}})
            try:
                new = {k: decode_array(v, np.dtype(dtype), f"params[{k!r}]") for k, v in reply["params"].items()}
            except (KeyError, TypeError, AttributeError, ResultError) as exc:
                prog.fault(f"a malformed reply ({exc}): {_quote(line)}")
        return new, {"run": run, "t": t}

    return step, prog.close
