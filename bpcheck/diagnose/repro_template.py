#!/usr/bin/env python3
"""Reproduce one bpcheck finding with nothing but NumPy and the implementation under test.

This script was written by ``bpcheck validate``. It loads the case saved beside
it (a .json spec and an .npz of params, x, y), runs the implementation on it --
a Python ``backprop(spec, params, x, y)`` or a program speaking the bpcheck/1
protocol -- and compares every tensor with the float64 truth embedded below
(the exact values, rounded once): a tensor matches when ||got - truth||_2 is at
most the error bpcheck allows it (the rounding the definition makes in the
case's dtype). It prints the mismatch and exits 1 while the bug is there, 0
once it is fixed. If bpcheck is importable, its own judgement is printed too
and decides the exit code (it also knows kinks and documented conventions).

    python repro_ID.py                          # the implementation bpcheck checked
    python repro_ID.py path/to/file.py:backprop # another Python implementation
    python repro_ID.py --exec "node mlp.js"     # another program
    python repro_ID.py --standalone ...         # never ask bpcheck, even where it is installed
"""
import base64
import importlib
import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

CONFIG = {}  # filled in by bpcheck.diagnose.repro
HERE = Path(__file__).resolve().parent
UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53}


def load_case():
    doc = json.loads((HERE / CONFIG["case"]).read_text())
    with np.load(HERE / doc["arrays"], allow_pickle=False) as npz:
        params = {k[len("params/"):]: npz[k] for k in npz.files if k.startswith("params/")}
        return doc["spec"], params, npz["x"], npz["y"]


def call_python(target, spec, params, x, y):
    module_name, _, attr = target.rpartition(":")
    sys.path.insert(0, CONFIG.get("cwd", "."))           # as in bpcheck's run: imports resolve from there
    if module_name.endswith(".py"):
        loader = importlib.util.spec_from_file_location("repro_target", module_name)
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    return getattr(module, attr)(spec, params, x, y)


def call_exec(argv, spec, params, x, y):
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=CONFIG.get("cwd"))
    hello = json.loads(proc.stdout.readline())
    print("hello:", json.dumps(hello)[:200])

    def encode(a):
        kind = "int64" if a.dtype.kind in "iu" else a.dtype.name
        out = {"dtype": kind, "shape": list(a.shape)}
        if hello.get("encoding") == "base64":
            out["base64"] = base64.b64encode(a.astype(np.dtype(kind).newbyteorder("<")).tobytes()).decode()
        else:
            out["data"] = a.ravel().tolist()
        return out
    request = {"id": "repro", "spec": spec, "params": {k: encode(v) for k, v in params.items()},
               "x": encode(x), "y": encode(y)}
    proc.stdin.write(json.dumps(request) + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    proc.stdin.close()
    proc.wait(timeout=30)
    reply = json.loads(line)
    if "error" in reply:
        sys.exit(f"the program replied with an error: {reply['error']}")
    return reply["result"]


def as_array(value):
    if isinstance(value, dict) and "base64" in value:
        raw = np.frombuffer(base64.b64decode(value["base64"]), np.dtype(value["dtype"]).newbyteorder("<"))
        return raw.astype(np.float64).reshape(value["shape"])
    if isinstance(value, dict):
        return np.asarray(value["data"], dtype=np.float64).reshape(value["shape"])
    return np.asarray(value, dtype=np.float64)


def tensors(result):
    """key -> array, with the keys of CONFIG['truth']."""
    out = {"loss": result.get("loss"), "input_grad": result.get("input_grad")}
    out.update(result.get("grads", {}))
    for kind, suffix in (("deltas", "delta"), ("activations", "activation")):
        out.update({f"{k}.{suffix}": v for k, v in (result.get(kind) or {}).items()})
    return {k: as_array(v) for k, v in out.items() if v is not None}


def main(argv):
    standalone = "--standalone" in argv
    argv = [a for a in argv if a != "--standalone"]
    spec, params, x, y = load_case()
    if argv[:1] == ["--exec"]:
        result = call_exec(shlex.split(argv[1]), spec, params, x, y)
    elif argv:
        result = call_python(argv[0], spec, params, x, y)
    elif "exec" in CONFIG:
        result = call_exec(CONFIG["exec"], spec, params, x, y)
    else:
        result = call_python(CONFIG["target"], spec, params, x, y)
    got, u = tensors(result), UNIT_ROUNDOFF[spec["dtype"]]
    print(f"case {CONFIG['case']}: {spec}")
    print(f"batch {x.shape[0]}; errors in units of u = {u:.3g} ({spec['dtype']}), relative to the truth's norm")
    wrong = 0
    for key, truth in CONFIG["truth"].items():
        want = np.asarray(truth, dtype=np.float64)
        if key not in got:
            print(f"  {key:22} not returned")
            continue
        bad, error = check(got[key], want, CONFIG["allowed"][key])
        wrong += bad
        scale = max(norm2(want), np.finfo(np.float64).tiny) * u
        shown = "wrong shape" if error is None else f"error {error / scale:10.3g} u"
        print(f"  {key:22} {shown}   allowed {CONFIG['allowed'][key] / scale:9.3g} u   "
              f"{'MISMATCH' if bad else 'ok'}")
        if bad and error is not None:
            g = got[key].reshape(want.shape)
            diff = g - want
            for j in np.argsort(-np.nan_to_num(np.abs(diff).ravel(), nan=np.inf))[:3]:
                index = list(map(int, np.unravel_index(j, want.shape))) if want.shape else []
                print(f"      at {index}: got {g.ravel()[j]:.17g}, truth {want.ravel()[j]:.17g}")
    code = 1 if wrong else 0
    if wrong:
        print(f"\n{wrong} tensor(s) do not match the truth. bpcheck's diagnosis was:\n{CONFIG['finding']}")
    else:
        print("\nevery tensor matches the truth within the error it is allowed")
    return code if standalone else bpcheck_verdict(argv, code)


def check(g, want, allowed):
    """(mismatch, error): the rule of bpcheck.judge.compare -- ||g - truth||_2 <= allowed, same shape."""
    if g.size != want.size:
        return True, None
    error = norm2(g.reshape(want.shape) - want)
    return not error <= allowed, error


def norm2(v):
    """||v||_2 without overflow in the squares (bpcheck.core.rounding.norm2)."""
    v = np.abs(np.asarray(v, dtype=np.float64)).ravel()
    m = float(np.max(v, initial=0.0))
    if not 0 < m < np.inf:
        return float(np.inf) if np.any(np.isinf(v)) else m
    return m * float(np.sqrt(np.sum(np.square(v / m))))


def bpcheck_verdict(argv, code):
    """bpcheck's own judgement of the same call, where bpcheck is installed; else ``code``."""
    try:
        from bpcheck.core.spec import load_case as bp_load
        from bpcheck.judge.judge import judge
        from bpcheck.run.pool import Candidate
    except ImportError:
        return code
    case = bp_load(HERE / CONFIG["case"])
    if argv[:1] == ["--exec"]:
        candidate = Candidate(argv=tuple(shlex.split(argv[1])))
    elif argv:
        candidate = Candidate(target=argv[0], isolate=False)
    elif "exec" in CONFIG:
        candidate = Candidate(argv=tuple(CONFIG["exec"]))
    else:
        candidate = Candidate(target=CONFIG["target"], isolate=False)
    backend = candidate.build()
    try:
        j = judge(case, backend.run(case), who=candidate.label, rerun=backend.run)
    except Exception as exc:
        print(f"bpcheck could not judge it: {type(exc).__name__}: {exc}")
        return code
    finally:
        if hasattr(backend, "close"):
            backend.close()
    notes = ", ".join(f"{k} {v}" for k, v in j.classes().items())
    print(f"bpcheck's judgement: {j.verdict().upper()}" + (f" ({notes})" if notes else ""))
    return 1 if j.verdict() == "fail" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
