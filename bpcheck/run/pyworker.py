"""Run a Python target in a process of its own, speaking ``bpcheck/1`` (docs/protocol.md).

    python -m bpcheck.run.pyworker path/to/mlp.py:backprop [--memory-mb 4096]

This is how ``bpcheck validate`` runs Python code by default: whatever the
target does -- exits, segfaults, hangs, recurses without end, eats memory,
prints to stdout -- happens in this process, which bpcheck kills and restarts
(``bpcheck.run.protocol.SubprocessBackend``), so the run goes on.

What it does beyond the protocol:
- stdout is moved to a private file descriptor before the target is imported;
  the target's own prints go to stderr and cannot corrupt a reply;
- the address space is limited (``--memory-mb``), so a leak ends in a
  MemoryError or a kill, not in the machine swapping;
- the reply is checked against the Result contract here (``validate_result``),
  and carries what it found: ``problems`` (wrong shapes or dtypes, missing
  gradients), ``unknown_keys`` and ``mutated`` -- the inputs the target
  overwrote in place (it is given fresh arrays; they are compared after the call).
Arrays travel as base64 of their bytes: exact, whatever the dtype.
"""
import argparse
import json
import os
import sys
import traceback


def _protocol_stream():
    """A text stream on a duplicate of fd 1; fd 1 itself then points at stderr."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8")


def _limit_memory(megabytes):
    if megabytes:
        import resource
        limit = int(megabytes) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bpcheck.run.pyworker", description=__doc__.split("\n")[0])
    parser.add_argument("target")
    parser.add_argument("--memory-mb", type=int, default=0)
    args = parser.parse_args(argv)
    out = _protocol_stream()
    _limit_memory(args.memory_mb)
    import numpy as np

    from bpcheck.core.spec import ACTIVATIONS, DTYPES, LOSSES, Case, ResultError, validate_result
    from bpcheck.run.backends import load_function
    from bpcheck.run.protocol import PROTOCOL, decode_array, encode_array

    def send(message):
        out.write(json.dumps(message, separators=(",", ":"), allow_nan=False) + "\n")
        out.flush()

    try:
        fn = load_function(args.target)
    except Exception as exc:    # an import that raises is the target's failure: say so on stderr
        print(f"bpcheck.run.pyworker: {exc}", file=sys.stderr)
        return 3
    send({"protocol": PROTOCOL, "name": args.target, "activations": list(ACTIVATIONS), "losses": list(LOSSES),
          "dtypes": list(DTYPES), "encoding": "base64", "trace": True})
    from bpcheck.run.backends import traced_call
    source = {_source_file(fn)} - {None}
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        spec = request["spec"]
        params = {k: decode_array(v, spec["dtype"]) for k, v in request["params"].items()}
        x = decode_array(request["x"], spec["dtype"])
        y = decode_array(request["y"], "int64" if spec["loss"] == "softmax_cross_entropy" else spec["dtype"])
        case = Case(spec, params, x, y, request["id"])
        given = ({**spec, "layers": [dict(layer) for layer in spec["layers"]]},
                 {k: v.copy() for k, v in params.items()}, x.copy(), y.copy())
        if request.get("trace"):               # the explain step: which lines did this call run?
            _, lines = traced_call(fn, given, source)
            send({"id": request["id"], "result": {"loss": 0.0, "grads": {}, "lines": sorted(lines)}})
            continue
        try:
            raw = fn(*given)
        except NotImplementedError as exc:
            send({"id": request["id"], "error": {"kind": "unsupported", "message": str(exc) or "not implemented"}})
            continue
        except BaseException as exc:      # RecursionError, MemoryError, SystemExit: the target's failure
            if isinstance(exc, KeyboardInterrupt):
                raise
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            at = f" (at {os.path.basename(where.filename)}:{where.lineno})" if where else ""
            send({"id": request["id"], "error": {"kind": "failed",
                                                 "message": f"raised {type(exc).__name__}: {exc}"[:2000] + at}})
            continue
        mutated = [name for name, before, after in
                   [("x", x, given[2]), ("y", y, given[3])]
                   + [(f"params[{k!r}]", params[k], given[1].get(k)) for k in params]
                   if not isinstance(after, np.ndarray) or after.shape != before.shape
                   or not np.array_equal(after, before, equal_nan=True)]
        try:
            result = validate_result(raw, case, who=args.target)
        except ResultError as exc:
            send({"id": request["id"], "error": {"kind": "failed", "message": str(exc)[:2000]}})
            continue
        encoded = {"loss": _number(result["loss"]),
                   "grads": {k: encode_array(v, "base64") for k, v in result["grads"].items()},
                   "problems": [list(p) for p in result["problems"]], "unknown_keys": result["unknown_keys"],
                   "mutated": mutated}
        if "input_grad" in result:
            encoded["input_grad"] = encode_array(result["input_grad"], "base64")
        for kind in ("activations", "deltas"):
            if result.get(kind):
                encoded[kind] = {k: encode_array(v, "base64") for k, v in result[kind].items()}
        send({"id": request["id"], "result": encoded})
    return 0


def _source_file(fn):
    import inspect
    try:
        return inspect.getsourcefile(fn)
    except TypeError:
        return None


def _number(value):
    import math
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


if __name__ == "__main__":
    sys.exit(main())
