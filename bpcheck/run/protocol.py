"""The subprocess adapter: any program that speaks bpcheck's line protocol is a backend.

Protocol ``bpcheck/1`` (docs/protocol.md, bpcheck/schemas/protocol.schema.json):
newline-delimited JSON over the program's stdin/stdout. The program writes a
hello line (what it supports), then answers every request line -- one case --
with one reply line carrying the same id: a result or an error. Floats travel
as shortest round-trip decimals or base64 little-endian bytes, so nothing is
lost in transit.

Everything the program can do wrong is a verdict, never a harness crash: no
hello, a malformed line, a reply for another id, silence past the timeout, an
exit. Each raises ``AdapterError`` with a message naming what happened; after
any of them the program is killed (its whole process group) and restarted for
the next case, so one bad case cannot desynchronise the rest. A reply
``{"error": {"kind": "unsupported"}}`` and anything the hello leaves out raise
``Unsupported``: skipped and listed, never counted as failures.

The program is started from an argv list (``shlex.split`` of ``--exec``), never
through a shell. Reading happens on a thread that splits the pipe into lines,
so a timeout is a ``queue.get(timeout=...)`` and a partial line can be quoted.
"""
import base64
import json
import os
import queue
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from functools import lru_cache

import numpy as np

from bpcheck.core.spec import ResultError, schema, validate_result
from bpcheck.run.backends import AdapterError, Unsupported

PROTOCOL = "bpcheck/1"
MAX_LINE = 64 * 2**20          # a line longer than this is garbage, not a reply
_EOF = object()


# ---- arrays ------------------------------------------------------------------

def encode_array(arr, encoding="decimal"):
    """A JSON object for ``arr``: row-major ``data`` (Python floats print as shortest round-trip
    decimals) or ``base64`` of the little-endian bytes."""
    arr = np.asarray(arr)
    dtype = "int64" if arr.dtype.kind in "iu" else arr.dtype.name
    shape = list(arr.shape)                       # a 0-d array (a loss's cotangent) keeps shape []
    arr = np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("<"))
    out = {"dtype": dtype, "shape": shape}
    if encoding == "base64":
        out["base64"] = base64.b64encode(arr.tobytes()).decode("ascii")
    else:
        out["data"] = arr.ravel().tolist()
    return out


def decode_array(value, dtype, name="array"):
    """An ndarray from an encoded object, nested lists or a number; ``dtype`` when none is given.
    null, "NaN", "Infinity" and "-Infinity" become the non-finite floats."""
    try:
        if isinstance(value, dict):
            dtype = np.dtype(value.get("dtype", dtype)).newbyteorder("<")
            if "base64" in value:
                arr = np.frombuffer(base64.b64decode(value["base64"], validate=True), dtype=dtype)
            else:
                arr = np.asarray(value["data"], dtype=np.float64).astype(dtype)
            return arr.reshape(value["shape"]).astype(dtype.newbyteorder("="))
        return np.asarray(value, dtype=np.float64).astype(dtype)
    except (TypeError, ValueError, KeyError, base64.binascii.Error) as exc:
        raise ResultError(f"{name} cannot be read as an array: {exc}") from None


def encode_request(case, case_id, encoding="decimal"):
    return {"id": case_id, "spec": case.spec,
            "params": {k: encode_array(v, encoding) for k, v in case.params.items()},
            "x": encode_array(case.x, encoding), "y": encode_array(case.y, encoding)}


def decode_result(result, case, who):
    """The reply's result with every array decoded, checked against the Result contract.
    A result from ``bpcheck.run.pyworker`` also carries what that check found in the child
    (``problems``, ``unknown_keys``) and the inputs the target overwrote (``mutated``)."""
    dtype = case.spec["dtype"]
    out = {"loss": decode_array(result["loss"], np.float64, "loss").item(),
           "grads": {k: decode_array(v, dtype, f"grads[{k!r}]") for k, v in result["grads"].items()}}
    if result.get("input_grad") is not None:
        out["input_grad"] = decode_array(result["input_grad"], dtype, "input_grad")
    for kind in ("pre_activations", "activations", "deltas"):
        if isinstance(result.get(kind), dict):
            out[kind] = {k: decode_array(v, dtype, f"{kind}[{k!r}]") for k, v in result[kind].items()}
    known = [(p[0], p[1], str(p[2])) for p in result.get("problems") or [] if isinstance(p, list) and len(p) == 3]
    checked = validate_result(out, case, who=who, known_problems=known)
    checked["unknown_keys"] = sorted(set(checked["unknown_keys"]) | set(map(str, result.get("unknown_keys") or [])))
    checked["mutated"] = [str(m) for m in result.get("mutated") or []]
    return checked


@lru_cache(maxsize=None)
def _validator(part):
    import jsonschema
    from referencing import Registry, Resource
    doc, case = schema("protocol.schema.json"), schema("case.schema.json")
    registry = Registry().with_resources([(s["$id"], Resource.from_contents(s)) for s in (doc, case)])
    return jsonschema.Draft202012Validator({"$ref": f"{doc['$id']}#/$defs/{part}"}, registry=registry)


def check_message(message, part):
    """Raise ValueError naming the first problem if ``message`` is no valid ``part`` (hello/request/reply)."""
    import jsonschema
    error = jsonschema.exceptions.best_match(_validator(part).iter_errors(message))
    if error is not None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise ValueError(f"{part}{where}: {error.message[:200]}")


# ---- the child process -------------------------------------------------------

class _Child:
    """A running program: lines from its stdout on a queue, the tail of its stderr kept."""

    def __init__(self, argv, cwd=None, env=None):
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, cwd=cwd, env=env, start_new_session=True)
        except OSError as exc:
            raise AdapterError(f"cannot start {shlex.join(argv)}: {exc.strerror or exc}") from None
        self.lines, self.partial, self.stderr = queue.Queue(), b"", deque(maxlen=20)
        threading.Thread(target=self._pump, daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_reader.start()

    def _pump(self):
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:               # an unterminated last line stays in self.partial: a torn reply
                self.lines.put(_EOF)
                return
            *complete, self.partial = (self.partial + chunk).split(b"\n")
            for line in complete:
                self.lines.put(line)
            if len(self.partial) > MAX_LINE:
                self.lines.put(self.partial[:200] + b"... (line longer than 64 MiB)")
                self.partial = b""

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self.stderr.append(line.decode("utf-8", "replace").rstrip())

    def send(self, message):
        try:
            self.proc.stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # it exited; the read that follows reports how

    def readline(self, timeout):
        """The next non-blank line (bytes), _EOF, or None when ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                return None
            if line is _EOF or line.strip():
                return line

    def exit_status(self):
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "closed its stdout"
        return (f"was killed by signal {-code}" if code < 0 else f"exited with status {code}")

    def stderr_tail(self, lines=5):
        if self.proc.poll() is not None:
            self._stderr_reader.join(timeout=1)   # let it read what the program wrote before exiting
        tail = list(self.stderr)[-lines:]
        return ("; stderr: " + " | ".join(tail)) if tail else ""

    def kill(self):
        """SIGKILL the program's whole process group (it was started in a session of its own)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.close(grace=None)

    def close(self, grace=2.0):
        """Close stdin (the program's cue to exit); kill it if it has not exited within ``grace`` s."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()


def start_program(argv, start_timeout, check_hello, *, cwd=None, env=None):
    """Start ``argv`` and read its hello line: (child, hello). ``check_hello(hello)`` raises ValueError
    for a hello it rejects. Raises ValueError naming the problem (no hello within ``start_timeout``
    seconds, an exit before it, a line that is not a valid hello) after killing the program."""
    child = _Child(argv, cwd, env)
    line = child.readline(start_timeout)
    problem = hello = None
    if line is None:
        problem = f"wrote no hello line within {start_timeout:g} s"
        problem += f" (partial line {_quote(child.partial)})" if child.partial else ""
    elif line is _EOF:
        problem = f"{child.exit_status()} before writing its hello line{child.stderr_tail()}"
    else:
        try:
            hello = json.loads(line)
            check_hello(hello)
        except ValueError as exc:
            problem = f"the hello line is not valid ({exc}); got {_quote(line)}"
    if problem:
        child.kill()
        raise ValueError(problem)
    return child, hello


def _quote(line, limit=120):
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else str(line)
    return repr(text if len(text) <= limit else text[:limit] + "...")


# What a child process gets from bpcheck's environment: enough to run, nothing more.
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV")
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def minimal_env(extra=()):
    """PATH, HOME, locale and temp dir, one BLAS thread, plus the names in ``extra``."""
    env = {k: os.environ[k] for k in PASSED_ENV + tuple(extra) if k in os.environ}
    env.update(THREAD_ENV)
    return env


def isolated_python(target, *, timeout=10.0, memory_mb=4096, cwd=None):
    """A backend that runs the Python ``target`` in a ``bpcheck.run.pyworker`` process of its own."""
    import sys
    env = minimal_env()
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd()] + [p for p in sys.path if p])
    argv = [sys.executable, "-m", "bpcheck.run.pyworker", target, "--memory-mb", str(memory_mb)]
    return SubprocessBackend(argv, timeout=timeout, name=target, cwd=cwd, env=env,
                             start_timeout=max(timeout, 60.0))     # importing torch takes seconds


class SubprocessBackend:
    """A backend that runs a program speaking ``bpcheck/1``; started lazily, restarted after a fault."""
    _child = None

    def __init__(self, command, *, timeout=10.0, name=None, cwd=None, env=None, start_timeout=None):
        self.argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not self.argv:
            raise ValueError("--exec: empty command")
        self.command, self.timeout, self.cwd, self._name = shlex.join(self.argv), timeout, cwd, name
        self.env = minimal_env() if env is None else env
        self.start_timeout = timeout if start_timeout is None else start_timeout
        self._child, self.hello, self.restarts, self._count = None, None, 0, 0
        self._lock = threading.Lock()

    @property
    def name(self):
        return self._name or (self.hello or {}).get("name") or self.command

    def __getstate__(self):  # a worker process starts its own copy of the program
        return {"command": self.argv, "timeout": self.timeout, "name": self._name, "cwd": self.cwd,
                "env": self.env, "start_timeout": self.start_timeout}

    def __setstate__(self, state):
        self.__init__(state.pop("command"), **state)

    def start(self):
        """Start the program if it is not running; return its hello (AdapterError if it has none)."""
        if self._child is not None:
            return self.hello
        try:
            child, hello = start_program(self.argv, self.start_timeout, lambda h: check_message(h, "hello"),
                                         cwd=self.cwd, env=self.env)
        except ValueError as exc:
            raise AdapterError(f"{self.command}: {exc}") from None
        self._child, self.hello = child, hello
        return hello

    def supports(self, spec):
        """True, or Unsupported naming what the hello line leaves out."""
        hello = self.start()
        missing = [f"dtype {spec['dtype']}"] * (spec["dtype"] not in hello["dtypes"])
        missing += [f"loss {spec['loss']}"] * (spec["loss"] not in hello["losses"])
        missing += [f"activation {a}" for a in dict.fromkeys(l["activation"] for l in spec["layers"])
                    if a not in hello["activations"]]
        if missing:
            raise Unsupported(f"{self.name}: not in its hello line: {', '.join(missing)}")
        return True

    def run(self, case):
        with self._lock:
            self.supports(case.spec)
            self._count += 1
            case_id = f"{case.id[:48]}.{self._count}"
            self._child.send(encode_request(case, case_id, self.hello.get("encoding", "decimal")))
            line = self._child.readline(self.timeout)
            try:
                reply = self._parse(line, case_id, case)
            except AdapterError:
                self._restart()
                raise
            if "error" in reply:
                kind, message = reply["error"]["kind"], reply["error"]["message"]
                if kind == "unsupported":
                    raise Unsupported(f"{self.name}: {message}")
                raise AdapterError(f"{self.name} failed on case {case.id}: {message[:2000]}")
            try:
                return decode_result(reply["result"], case, self.name)
            except ResultError as exc:
                raise AdapterError(f"{exc} (case {case.id})") from None

    def trace_lines(self, case):
        """The source lines a call on ``case`` runs, for programs that offer it (hello "trace": true,
        as bpcheck's own Python worker does); an empty set otherwise or on any fault."""
        with self._lock:
            try:
                if not self.start().get("trace"):
                    return set()
                self._count += 1
                case_id = f"{case.id[:48]}.{self._count}"
                request = encode_request(case, case_id, self.hello.get("encoding", "decimal"))
                self._child.send({**request, "trace": True})
                reply = self._parse(self._child.readline(self.timeout), case_id, case)
            except AdapterError:
                self._restart()
                return set()
        return {(str(f), int(n)) for f, n in (reply.get("result") or {}).get("lines", [])}

    def _parse(self, line, case_id, case):
        """The reply object, or AdapterError for silence, an exit, garbage or a wrong id."""
        where = f"{self.name}, case {case.id}"
        if line is None:
            partial = f"; partial line {_quote(self._child.partial)}" if self._child.partial else ""
            raise AdapterError(f"{where}: no reply within the timeout of {self.timeout:g} s{partial}; "
                               "the program was killed and will be restarted")
        if line is _EOF:
            partial = (f" (it had written part of a line: {_quote(self._child.partial)})"
                       if self._child.partial else "")
            raise AdapterError(f"{where}: the program {self._child.exit_status()} before replying{partial}"
                               f"{self._child.stderr_tail()}")
        try:
            reply = json.loads(line)
        except ValueError:
            raise AdapterError(f"{where}: the reply is not a JSON line: {_quote(line)} "
                               "(stdout is for protocol lines only; log to stderr)") from None
        try:
            check_message(reply, "reply")
        except ValueError as exc:
            raise AdapterError(f"{where}: the reply does not follow the protocol: {exc}") from None
        if reply["id"] != case_id:
            raise AdapterError(f"{where}: reply for id {reply['id']!r}, expected {case_id!r} "
                               "(one reply per request, with the request's id)")
        return reply

    def _restart(self):
        """Kill the program after a protocol fault; the next run starts a fresh one."""
        if self._child is not None:
            self._child.kill()
            self._child = None
            self.restarts += 1

    def close(self):
        if self._child is not None:
            self._child.close()
            self._child = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    __del__ = close
