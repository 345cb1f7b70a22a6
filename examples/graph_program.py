"""A whole-network candidate over the line protocol: the networks of examples/numpy_networks.py served as a
separate program speaking bpcheck-op/1's graph requests (docs/protocol.md), as a program in any language
would. It imports neither bpcheck nor reference.

    bpcheck graph transformer_block --exec "python examples/graph_program.py"

stdout carries the protocol only: one hello line, then one reply line per request.
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy_networks  # noqa: E402  (beside this file)

ARCHITECTURES = ("residual_mlp", "cnn", "tied_embedding", "transformer_block", "lstm_lm")


def decode(value):
    """An array from {"dtype", "shape", "data"} (row-major data)."""
    return np.asarray(value["data"], dtype=np.float64).astype(value["dtype"]).reshape(value["shape"])


def encode(array):
    array = np.asarray(array)
    return {"dtype": array.dtype.name, "shape": list(array.shape), "data": array.ravel().tolist()}


def reply(request):
    fn = getattr(numpy_networks, request["graph"])
    values = {k: decode(v) for k, v in request["values"].items()}
    constants = {k: decode(v) for k, v in request["constants"].items()}
    out, grads, deltas, outputs = fn(values, constants, request["hyper"], decode(request["cotangent"]))
    return {"id": request["id"], "out": encode(out), "grads": {k: encode(g) for k, g in grads.items()},
            "deltas": {k: encode(d) for k, d in deltas.items()},
            "outputs": {k: encode(o) for k, o in outputs.items()}}


def main():
    print(json.dumps({"protocol": "bpcheck-op/1", "ops": [], "graphs": list(ARCHITECTURES),
                      "dtypes": ["float32", "float64"], "name": "numpy_networks over the protocol"}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = reply(request)
        except Exception as exc:                   # say what failed instead of dying mid-run
            answer = {"id": request.get("id"), "error": {"kind": "failed", "message": f"{type(exc).__name__}: {exc}"}}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
