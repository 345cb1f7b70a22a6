"""A bpcheck-op/1 program serving one zoo member (argv[1], a file path): a graph zoo member's ``net`` for its
architecture, or a train zoo member's ``step`` for its optimizer, with each run's state kept here. argv[2]
"hang" never replies; "nohello" leaves the member's graph or optimizer out of its hello."""
import importlib.util
import json
import sys

import numpy as np


def decode(value):
    return np.asarray(value["data"], dtype=np.float64).astype(value["dtype"]).reshape(value["shape"])


def encode(array):
    array = np.asarray(array)
    return {"dtype": array.dtype.name, "shape": list(array.shape), "data": array.ravel().tolist()}


def graph_reply(member, r):
    result = member.net({k: decode(v) for k, v in r["values"].items()},
                        {k: decode(v) for k, v in r["constants"].items()}, r["hyper"], decode(r["cotangent"]))
    keys = ("grads", "deltas", "outputs")
    return {"out": encode(result[0]), **{k: {n: encode(a) for n, a in part.items()} for k, part in zip(keys, result[1:])}}


def step_reply(member, r, states):
    new, states[r["run"]] = member.step({k: decode(v) for k, v in r["params"].items()},
                                        {k: decode(v) for k, v in r["grads"].items()}, states.get(r["run"]), r["hyper"])
    return {"params": {k: encode(v) for k, v in new.items()}}


def main():
    spec = importlib.util.spec_from_file_location("member", sys.argv[1])
    member = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(member)
    mode = sys.argv[2] if len(sys.argv) > 2 else ""
    graph = "arch" in member.EXPECTED
    offered = [] if mode == "nohello" else [member.EXPECTED["arch" if graph else "optimizer"]]
    print(json.dumps({"protocol": "bpcheck-op/1", "ops": [], "graphs" if graph else "optimizers": offered,
                      "dtypes": ["float32", "float64"]}), flush=True)
    states = {}
    for line in sys.stdin:
        if mode == "hang":
            continue
        r = json.loads(line)
        answer = graph_reply(member, r) if graph else step_reply(member, r, states)
        print(json.dumps({"id": r["id"], **answer}), flush=True)


if __name__ == "__main__":
    main()
