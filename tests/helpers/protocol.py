"""FAKE: a bpcheck/1 protocol program (Python source) whose misbehaviour is chosen by its argv[1]."""
import textwrap

# A protocol program whose misbehaviour is chosen by argv[1]; "correct" answers with
# the NumPy reference (as nested lists, or base64 with argv[2] == "base64").
FAKE = textwrap.dedent('''
    import base64, json, os, sys, time
    import numpy as np
    mode = sys.argv[1]
    encoding = sys.argv[2] if len(sys.argv) > 2 else "decimal"
    def send(obj):
        sys.stdout.write(json.dumps(obj) + "\\n"); sys.stdout.flush()
    if mode == "no-hello":
        time.sleep(60)
    if mode == "bad-hello":
        print("Welcome to my MLP!", flush=True)
    if mode == "exit-early":
        sys.exit(4)
    send({"protocol": "bpcheck/1", "name": "fake-" + mode, "encoding": encoding,
          "activations": ["identity", "relu", "tanh", "sigmoid"], "losses": ["mse", "sse"],
          "dtypes": ["float32", "float64"]})
    def array(a):
        if a.get("base64") is not None:
            return np.frombuffer(base64.b64decode(a["base64"]), dtype=np.dtype(a["dtype"]).newbyteorder("<")).reshape(a["shape"])
        return np.asarray(a["data"], dtype=a["dtype"]).reshape(a["shape"])
    for n, line in enumerate(sys.stdin):
        req = json.loads(line)
        if mode == "hang":
            time.sleep(60)
        if mode == "crash":
            sys.stderr.write("Segmentation fault (simulated)\\n"); sys.stderr.flush(); os._exit(139)
        if mode == "crash-once" and not os.path.exists(sys.argv[3]):
            open(sys.argv[3], "w").close(); os._exit(1)
        if mode == "garbage":
            print("computing gradients...", flush=True)
            continue
        if mode == "partial":
            sys.stdout.write('{"id": "' + req["id"] + '", "res'); sys.stdout.flush(); time.sleep(60)
        if mode == "wrong-id":
            send({"id": "case-that-never-was", "result": {"loss": 0, "grads": {}}}); continue
        if mode == "unsupported":
            send({"id": req["id"], "error": {"kind": "unsupported", "message": "no batches of 4, sorry"}}); continue
        if mode == "failed":
            send({"id": req["id"], "error": {"kind": "failed", "message": "ZeroDivisionError in layer 2"}}); continue
        if mode == "bad-shape":
            send({"id": req["id"], "result": {"loss": 1.0, "grads": {k: [1.0] for k in req["params"]}}}); continue
        if mode == "nan":
            send({"id": req["id"], "result": {"loss": None, "grads": {k: {"dtype": "float64", "shape": v["shape"],
                  "data": [None] * int(np.prod(v["shape"]))} for k, v in req["params"].items()}}}); continue
        from reference.network import backprop
        out = backprop(req["spec"], {k: array(v) for k, v in req["params"].items()}, array(req["x"]), array(req["y"]))
        def enc(a):
            if encoding != "base64":
                return a.tolist()
            raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
            return {"dtype": a.dtype.name, "shape": list(a.shape), "base64": base64.b64encode(raw).decode()}
        send({"id": req["id"], "result": {"loss": out["loss"], "grads": {k: enc(v) for k, v in out["grads"].items()},
              "input_grad": enc(out["input_grad"]), "deltas": {k: enc(v) for k, v in out["deltas"].items()}}})
''')
