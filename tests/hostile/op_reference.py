"""A correct bpcheck-op/1 program for layernorm on reference/layers.py, and the pieces the op_* programs share.

Run as a program it declares layernorm in the dtypes named on its command line (both by default) and
answers every request right; ``serve(answer)`` is its loop with another answer, ``correct(request)``
the right reply's fields.
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from reference.layers import layernorm_backward, layernorm_forward  # noqa: E402

DTYPES = ["float32", "float64"]


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def hello(ops=("layernorm",), dtypes=DTYPES):
    send({"protocol": "bpcheck-op/1", "name": Path(sys.argv[0]).stem, "ops": list(ops), "dtypes": list(dtypes)})


def array(value, dtype):
    return np.asarray(value["data"], dtype=np.float64).astype(dtype).reshape(value["shape"])


def encode(a):
    a = np.asarray(a)
    return {"dtype": a.dtype.name, "shape": list(a.shape), "data": a.ravel().tolist()}


def correct(request):
    """{"out": ..., "grads": {...}} for a layernorm request, computed by the reference in its dtype."""
    dtype = request["dtype"]
    a = {k: array(v, dtype) for k, v in request["inputs"].items()}
    out, cache = layernorm_forward(a["x"], a["gamma"], a["beta"], dict(request["hyper"]))
    dx, dgamma, dbeta = layernorm_backward(array(request["cotangent"], dtype), cache)
    return {"out": out, "grads": {"x": dx, "gamma": dgamma, "beta": dbeta}}


def reply(request, result):
    return {"id": request["id"], "out": encode(result["out"]),
            "grads": {k: encode(v) for k, v in result["grads"].items()}}


def serve(answer):
    """One reply line per request line, ``answer(request) -> message``, until stdin closes."""
    for line in sys.stdin:
        if line.strip():
            send(answer(json.loads(line)))


if __name__ == "__main__":
    hello(dtypes=sys.argv[1:] or DTYPES)
    serve(lambda request: reply(request, correct(request)))
