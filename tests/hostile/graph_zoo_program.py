"""A bpcheck-op/1 program serving one graph zoo member (argv[1], a file path) for its architecture, and
behaving badly on request: argv[2] "hang" never replies, "nohello-graphs" leaves graphs out of its hello."""
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
    mode = sys.argv[2] if len(sys.argv) > 2 else ""
    graphs = [] if mode == "nohello-graphs" else [member.EXPECTED["arch"]]
    print(json.dumps({"protocol": "bpcheck-op/1", "ops": [], "graphs": graphs, "dtypes": ["float32", "float64"]}),
          flush=True)
    for line in sys.stdin:
        if mode == "hang":
            continue
        r = json.loads(line)
        result = member.net({k: decode(v) for k, v in r["values"].items()},
                            {k: decode(v) for k, v in r["constants"].items()}, r["hyper"], decode(r["cotangent"]))
        keys = ("out", "grads", "deltas", "outputs")
        reply = {"id": r["id"], "out": encode(result[0]),
                 **{k: {n: encode(a) for n, a in part.items()} for k, part in zip(keys[1:], result[1:])}}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
