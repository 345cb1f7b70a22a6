"""The op protocol ``bpcheck-op/1``: a program in any language checked one op at a time.

Newline-delimited JSON over the program's stdin/stdout, like ``bpcheck/1`` (docs/protocol.md), with
which it shares its array encoding (``bpcheck.run.protocol.encode_array``: row-major ``data`` of shortest
round-trip decimals, or ``base64`` of little-endian bytes; integer arrays as int64):

    hello    {"protocol": "bpcheck-op/1", "ops": ["layernorm", ...], "dtypes": ["float32", "float64"],
              "encoding": "decimal" | "base64" (optional), "name": "..." (optional)}
    request  {"id": "7", "op": "layernorm", "dtype": "float32", "hyper": {"eps": 1e-05},
              "inputs": {"x": A, "gamma": A, "beta": A}, "constants": {}, "cotangent": A}
    reply    {"id": "7", "out": A, "grads": {"x": A, "gamma": A, "beta": A}}
          or {"id": "7", "error": {"kind": "unsupported" | "failed", "message": "..."}}

A whole network (``bpcheck graph``): the hello lists the architectures it takes, ``"graphs":
["residual_mlp", ...]``, and a graph request names one, with its graph (``bpcheck-graph/1``)::

    request  {"id": "8", "graph": "residual_mlp", "spec": {...the graph...}, "dtype": "float64",
              "hyper": {"norm": {"eps": 1e-05}, ...}, "values": {"x": A, "w1": A, ...},
              "constants": {"y": A}, "cotangent": A}
    reply    {"id": "8", "out": A, "grads": {"x": A, "w1": A, ...},
              "deltas": {"fc1": A, ...} (optional), "outputs": {"fc1": A, ...} (optional)}

Inputs, constants and hyper-parameters are named as in the op's record (``bpcheck op --list``;
docs/layers_contract.md gives the equations); ``cotangent`` is dout, the upstream gradient of ``out``.
An op or dtype the hello leaves out, and a reply of kind "unsupported", are declined (not judged);
a malformed line, a reply for another id, silence past the timeout or an exit are verdicts against the
program (``CandidateError``), after which it is killed and restarted for the next case. A program that
writes no valid hello, or is silent past the timeout twice in a row, stops the run (``CandidateFatal``:
exit 2 with the reason) rather than costing a timeout per case.
The program is started from an argv list, never through a shell.
"""
import json
import shlex
import threading

import numpy as np

from bpcheck.opcheck.candidates import Candidate, CandidateError, CandidateFatal, Unsupported
from bpcheck.run.protocol import (_EOF, ResultError, _quote, decode_array, encode_array, minimal_env,
                                  start_program)

__all__ = ["PROTOCOL", "program", "graph_program"]

PROTOCOL = "bpcheck-op/1"
ENCODINGS = ("decimal", "base64")
HANGS = 2                      # consecutive timeouts after which a program is called hung


def _check_hello(hello):
    """Raise ValueError unless ``hello`` is a bpcheck-op/1 hello line."""
    if not (isinstance(hello, dict) and hello.get("protocol") == PROTOCOL
            and isinstance(hello.get("ops"), list) and isinstance(hello.get("dtypes"), list)):
        raise ValueError(f'expected {{"protocol": "{PROTOCOL}", "ops": [...], "dtypes": [...]}}')
    if hello.get("encoding", "decimal") not in ENCODINGS:
        raise ValueError(f"encoding {hello.get('encoding')!r} is not one of {ENCODINGS}")


class _Program:
    def __init__(self, argv, timeout, start_timeout):
        self.argv, self.timeout, self.start_timeout = argv, timeout, start_timeout
        self.command = shlex.join(argv)
        self.child, self.hello, self.count, self.silent = None, None, 0, 0
        self.lock = threading.Lock()

    def start(self):
        if self.child is not None:
            return self.hello
        try:
            child, hello = start_program(self.argv, self.start_timeout, _check_hello, env=minimal_env())
        except ValueError as exc:
            raise CandidateFatal(f"{self.command}: {exc}") from None
        self.child, self.hello = child, hello
        return hello

    def fault(self, message):
        if self.child is not None:
            self.child.kill()
        self.child = None
        raise CandidateError(f"{self.command}: {message}")

    def call(self, op, case, given):
        with self.lock:
            hello = self.start()
            if op.name not in hello["ops"] or case.dtype not in hello["dtypes"]:
                raise Unsupported(f"{self.command}: its hello line leaves out {op.name} in {case.dtype}")
            enc = hello.get("encoding", "decimal")
            reply, line = self._exchange({"op": op.name, "dtype": case.dtype, "hyper": case.hyper,
                                          "inputs": {k: encode_array(given[k], enc) for k in case.inputs},
                                          "constants": {k: encode_array(given[k], enc) for k in case.constants},
                                          "cotangent": encode_array(case.cotangent, enc)})
            try:
                out = decode_array(reply["out"], np.float64, "out")
                grads = {k: decode_array(v, np.float64, f"grads[{k!r}]") for k, v in reply["grads"].items()}
            except (KeyError, TypeError, AttributeError, ResultError) as exc:
                self.fault(f"a malformed reply ({exc}): {_quote(line)}")
            return out, grads

    def call_graph(self, case):
        """A whole-network request (``case``: a ``bpcheck.ops.graph_cases.GraphCase``): {"out", "grads",
        "deltas", "outputs"} as float64 arrays (deltas and outputs may be empty)."""
        with self.lock:
            hello = self.start()
            if case.arch not in hello.get("graphs", []) or case.dtype not in hello["dtypes"]:
                raise Unsupported(f"{self.command}: its hello line leaves out graph {case.arch} in {case.dtype}")
            enc = hello.get("encoding", "decimal")
            reply, line = self._exchange({"graph": case.arch, "spec": case.graph.to_json(), "dtype": case.dtype,
                                          "hyper": case.hyper,
                                          "values": {k: encode_array(v, enc) for k, v in case.values.items()},
                                          "constants": {k: encode_array(v, enc) for k, v in case.constants.items()},
                                          "cotangent": encode_array(case.cotangent, enc)})
            try:
                found = {"out": decode_array(reply["out"], np.float64, "out")}
                for key in ("grads", "deltas", "outputs"):
                    found[key] = {k: decode_array(v, np.float64, f"{key}[{k!r}]")
                                  for k, v in (reply.get(key) or {}).items()}
                if not reply.get("grads"):
                    raise KeyError("grads")
            except (KeyError, TypeError, AttributeError, ResultError) as exc:
                self.fault(f"a malformed reply ({exc}): {_quote(line)}")
            return found

    def _exchange(self, message):
        """Send ``message`` with the next id; (the reply, its line). A silent, dead or garbled program is a
        verdict against it (CandidateError; CandidateFatal once it hangs twice in a row); a reply of kind
        "unsupported" declines the case (Unsupported)."""
        self.count += 1
        case_id = str(self.count)
        self.child.send({"id": case_id, **message})
        line = self.child.readline(self.timeout)
        if line is None:
            self.silent += 1
            if self.silent >= HANGS:
                self.close()
                raise CandidateFatal(f"{self.command}: no reply within {self.timeout:g} s, {HANGS} times in a "
                                     "row: it hangs")
            self.fault(f"no reply within {self.timeout:g} s")
        self.silent = 0
        if line is _EOF:
            self.fault(f"{self.child.exit_status()} instead of replying{self.child.stderr_tail()}")
        try:
            reply = json.loads(line)
        except ValueError:
            self.fault(f"the reply is not JSON: {_quote(line)}")
        if not isinstance(reply, dict) or reply.get("id") != case_id:
            self.fault(f"a reply for another request (expected id {case_id!r}): {_quote(line)}")
        if "error" in reply:
            err = reply["error"] if isinstance(reply["error"], dict) else {"message": reply["error"]}
            if err.get("kind") == "unsupported":
                raise Unsupported(f"{self.command}: {err.get('message', 'unsupported')}")
            raise CandidateError(f"{self.command} failed: {err.get('message', '')}")
        return reply, line

    def close(self):
        """Close the program's stdin (its cue to exit), killing it if it lingers."""
        if self.child is not None:
            self.child.close()
        self.child = None


def program(command, *, timeout=10.0, start_timeout=30.0, name=None):
    """A Candidate that runs ``command`` (a string split with shlex, or an argv list) speaking
    ``bpcheck-op/1``; ``timeout`` seconds per reply, ``start_timeout`` for the hello line. Close it
    (``candidate.close()``) when done. Raises ValueError for an empty command."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if not argv:
        raise ValueError("--exec: empty command")
    prog = _Program(argv, timeout, start_timeout)
    return Candidate(name or prog.command, prog.call, prog.close)


def graph_program(command, *, timeout=30.0, start_timeout=30.0):
    """(``run(case)`` for a ``bpcheck.opcheck.graph_candidates.GraphCandidate``, ``close``): ``command``
    speaking ``bpcheck-op/1`` with graph requests (its hello lists ``"graphs"``)."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if not argv:
        raise ValueError("--exec: empty command")
    prog = _Program(argv, timeout, start_timeout)
    return prog.command, prog.call_graph, prog.close
