"""A bpcheck/1 program that answers right, but on a 3-layer network writes half a reply and then hangs or exits."""
import base64
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def array(value):
    dtype = np.dtype(value["dtype"]).newbyteorder("<")
    return np.frombuffer(base64.b64decode(value["base64"]), dtype=dtype).reshape(value["shape"]).astype(
        dtype.newbyteorder("="))


def main(mode):
    send({"protocol": "bpcheck/1", "name": f"half-line-{mode}", "encoding": "base64",
          "activations": list(correct.numpy_mlp.ACTIVATIONS), "losses": ["mse", "sse", "half_sse"],
          "dtypes": ["float32", "float64"]})
    for line in sys.stdin:
        request = json.loads(line)
        if correct.picked(request["spec"]):
            sys.stdout.write('{"id": "' + request["id"] + '", "result": {"loss": 0.5, "gra')
            sys.stdout.flush()
            if mode == "exit":
                print("giving up half-way through the reply", file=sys.stderr, flush=True)
                os._exit(5)
            time.sleep(120)
        out = correct.backprop(request["spec"], {k: array(v) for k, v in request["params"].items()},
                               array(request["x"]), array(request["y"]))
        send({"id": request["id"], "result": {"loss": out["loss"],
                                              "grads": {k: v.tolist() for k, v in out["grads"].items()}}})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "hang")
