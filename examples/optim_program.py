"""An optimizer over the line protocol: reference/optim.py's update rules served as a separate program, one
state per run, as a program in any language would (docs/protocol.md, "Training steps").

    bpcheck train residual_mlp --optimizer adam --exec "python examples/optim_program.py"

stdout carries the protocol only.
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reference import optim  # noqa: E402

RULES = ("sgd", "momentum", "nesterov", "adam", "adamw", "clip_sgd")


def decode(value):
    return np.asarray(value["data"], dtype=np.float64).astype(value["dtype"]).reshape(value["shape"])


def encode(array):
    array = np.asarray(array)
    return {"dtype": array.dtype.name, "shape": list(array.shape), "data": array.ravel().tolist()}


def main():
    print(json.dumps({"protocol": "bpcheck-op/1", "ops": [], "optimizers": list(RULES),
                      "dtypes": ["float32", "float64"]}), flush=True)
    states = {}
    for line in sys.stdin:
        r = json.loads(line)
        try:
            rule = getattr(optim, r["train_step"])
            params = {k: decode(v) for k, v in r["params"].items()}
            grads = {k: decode(v) for k, v in r["grads"].items()}
            new, states[r["run"]] = rule(params, grads, states.get(r["run"]), r["hyper"])
            answer = {"id": r["id"], "params": {k: encode(v) for k, v in new.items()}}
        except Exception as exc:                       # say what failed instead of dying mid-run
            answer = {"id": r.get("id"), "error": {"kind": "failed", "message": f"{type(exc).__name__}: {exc}"}}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
