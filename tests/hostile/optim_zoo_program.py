"""A bpcheck-op/1 program serving one train zoo member's step (argv[1], a file path) for its optimizer; with
argv[2] "nohello" its hello leaves every optimizer out."""
import importlib.util
import json
import sys

import numpy as np


def decode(value):
    return np.asarray(value["data"], dtype=np.float64).astype(value["dtype"]).reshape(value["shape"])


def encode(array):
    array = np.asarray(array)
    return {"dtype": array.dtype.name, "shape": list(array.shape), "data": array.ravel().tolist()}


def main():
    spec = importlib.util.spec_from_file_location("member", sys.argv[1])
    member = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(member)
    offered = [] if sys.argv[2:] == ["nohello"] else [member.EXPECTED["optimizer"]]
    print(json.dumps({"protocol": "bpcheck-op/1", "ops": [], "optimizers": offered,
                      "dtypes": ["float32", "float64"]}), flush=True)
    states = {}
    for line in sys.stdin:
        r = json.loads(line)
        new, states[r["run"]] = member.step({k: decode(v) for k, v in r["params"].items()},
                                            {k: decode(v) for k, v in r["grads"].items()}, states.get(r["run"]),
                                            r["hyper"])
        print(json.dumps({"id": r["id"], "params": {k: encode(v) for k, v in new.items()}}), flush=True)


if __name__ == "__main__":
    main()
