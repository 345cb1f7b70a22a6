"""The subprocess protocol: exact float transport, the schema, and every way a program
can misbehave (hang, crash, garbage, partial line, wrong id) as a clear verdict --
never a crash of the harness -- plus the JavaScript example end to end."""
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bpcheck.proof.vectors import vector_case
from bpcheck.run.backends import AdapterError, Unsupported
from bpcheck.run.protocol import SubprocessBackend, check_message, decode_array, encode_array, encode_request
from tests.helpers.protocol import FAKE

REPO = Path(__file__).resolve().parents[1]
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    path = tmp_path_factory.mktemp("fake") / "fake_mlp.py"
    path.write_text(FAKE)
    return lambda mode, *args, timeout=2.0: SubprocessBackend([sys.executable, str(path), mode, *args],
                                                              timeout=timeout)


def case(dtype="float64", loss="mse", activation="tanh"):
    return vector_case(loss, activation, dtype)


# ---- exact transport ----------------------------------------------------------

@pytest.mark.parametrize("encoding", ["decimal", "base64"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_arrays_round_trip_exactly(encoding, dtype):
    rng = np.random.default_rng(7)
    a = (rng.standard_normal((3, 5)) * 10.0 ** rng.integers(-30, 30, (3, 5))).astype(dtype) \
        if dtype != "int64" else rng.integers(-9, 9, (3, 5))
    text = json.dumps(encode_array(a, encoding))      # through JSON text, as on the pipe
    back = decode_array(json.loads(text), None)
    assert back.dtype == a.dtype and back.shape == a.shape
    assert np.array_equal(back.view(np.uint8), np.ascontiguousarray(a).view(np.uint8))


def test_float32_written_in_either_shortest_form_parses_exactly():
    a = np.float32([0.1, 1 / 3, 3.4028235e38, 1e-45])
    f32_shortest = [float(np.format_float_positional(v, unique=True)) for v in a]   # e.g. 0.1
    f64_shortest = a.astype(np.float64).tolist()                                     # 0.10000000149011612
    for data in (f32_shortest, f64_shortest):
        assert np.array_equal(decode_array(data, "float32"), a)


def test_non_finite_values_are_read_not_rejected():
    got = decode_array({"dtype": "float64", "shape": [4], "data": [None, "NaN", "Infinity", "-Infinity"]}, None)
    assert np.isnan(got[:2]).all() and got[2] == np.inf and got[3] == -np.inf


def test_messages_follow_the_schema():
    c = case()
    check_message(encode_request(c, "r1"), "request")
    check_message(encode_request(c, "r1", "base64"), "request")
    check_message({"protocol": "bpcheck/1", "activations": ["relu"], "losses": ["mse"], "dtypes": ["float64"]},
                  "hello")
    check_message({"id": "r1", "result": {"loss": 0.5, "grads": {"layers.0.W": [[1, 2]]}}}, "reply")
    check_message({"id": "r1", "error": {"kind": "unsupported", "message": "gelu"}}, "reply")
    for bad, part in [({"protocol": "bpcheck/2", "activations": [], "losses": [], "dtypes": []}, "hello"),
                      ({"protocol": "bpcheck/1", "activations": ["swish"], "losses": [], "dtypes": []}, "hello"),
                      ({"id": "r1"}, "reply"),
                      ({"id": "r1", "result": {"loss": "lots", "grads": {}}}, "reply"),
                      ({"id": "r1", "error": {"kind": "oops", "message": ""}}, "reply")]:
        with pytest.raises(ValueError):
            check_message(bad, part)


# ---- a correct program --------------------------------------------------------

@pytest.mark.parametrize("encoding", ["decimal", "base64"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_correct_program_matches_the_reference_bit_for_bit(fake, encoding, dtype):
    from reference.network import backprop
    c = case(dtype)
    with fake("correct", encoding) as backend:
        got = backend.run(c)
    want = backprop(c.spec, c.params, c.x, c.y)
    assert got["loss"] == want["loss"]
    for name, g in want["grads"].items():
        assert got["grads"][name].dtype == np.dtype(dtype)
        assert np.array_equal(got["grads"][name], g)


def test_unsupported_features_are_skipped_before_anything_is_sent(fake):
    with fake("correct") as backend:
        with pytest.raises(Unsupported, match="activation gelu"):
            backend.run(case(activation="gelu"))
        with pytest.raises(Unsupported, match="loss softmax_cross_entropy"):
            backend.run(case(loss="softmax_cross_entropy", activation="relu"))
        backend.run(case())  # still in sync
    with fake("unsupported") as backend, pytest.raises(Unsupported, match="no batches of 4"):
        backend.run(case())


# ---- misbehaviour: each a clear AdapterError, the harness intact --------------

def test_a_wrong_shape_is_a_problem_of_the_result_not_an_adapter_error(fake):
    with fake("bad-shape", timeout=1.0) as backend:
        result = backend.run(case())
    assert any(tensor == "W" and "has shape (1,), expected (4, 3)" in message
               for _, tensor, message in result["problems"]), result["problems"]


@pytest.mark.parametrize("mode, message", [
    ("hang", r"no reply within the timeout of 1 s.*killed and will be restarted"),
    ("partial", r"no reply within the timeout.*partial line '\{\"id\": "),
    ("crash", r"killed by signal|exited with status 139.*Segmentation fault \(simulated\)"),
    ("garbage", r"not a JSON line: 'computing gradients\.\.\.'.*log to stderr"),
    ("wrong-id", r"reply for id 'case-that-never-was', expected"),
    ("failed", r"failed on case .*ZeroDivisionError in layer 2"),
])
def test_misbehaviour_is_a_verdict(fake, mode, message):
    with fake(mode, timeout=1.0) as backend:
        start = time.monotonic()
        with pytest.raises(AdapterError, match=message):
            backend.run(case())
        assert time.monotonic() - start < 10
        child = backend._child
        if mode in ("hang", "partial", "crash", "garbage", "wrong-id"):
            assert child is None and backend.restarts == 1   # killed; the next case starts afresh


def test_nan_reply_is_read_and_judged_not_rejected(fake):
    with fake("nan") as backend:
        got = backend.run(case())
    assert np.isnan(got["loss"]) and np.isnan(got["grads"]["layers.0.W"]).all()


@pytest.mark.parametrize("mode, message", [
    ("no-hello", r"wrote no hello line within 1 s"),
    ("bad-hello", r"hello line is not valid.*Welcome to my MLP"),
    ("exit-early", r"exited with status 4 before writing its hello line"),
])
def test_a_program_without_a_valid_hello_is_an_adapter_error(fake, mode, message):
    with fake(mode, timeout=1.0) as backend, pytest.raises(AdapterError, match=message):
        backend.start()


def test_missing_program_is_an_adapter_error():
    with pytest.raises(AdapterError, match="cannot start"):
        SubprocessBackend("./no-such-program --flag").start()


def test_hung_program_is_killed_with_its_process_group(fake):
    backend = fake("hang", timeout=0.5)
    backend.start()
    proc = backend._child.proc
    with pytest.raises(AdapterError):
        backend.run(case())
    assert proc.poll() is not None


def test_program_is_restarted_after_a_crash(fake, tmp_path):
    with fake("crash-once", "decimal", str(tmp_path / "crashed")) as backend:
        with pytest.raises(AdapterError, match="exited with status 1"):
            backend.run(case())
        assert backend.run(case())["loss"] > 0
        assert backend.restarts == 1


def test_backend_pickles_as_its_command(fake):
    import pickle
    backend = fake("correct")
    clone = pickle.loads(pickle.dumps(backend))
    assert clone.argv == backend.argv and clone._child is None


def test_exec_string_is_split_not_given_to_a_shell(tmp_path):
    marker = tmp_path / "pwned"
    backend = SubprocessBackend(f"{sys.executable} -c 'import sys; sys.exit(3)' ; touch {marker}", timeout=2)
    with pytest.raises(AdapterError):
        backend.start()
    assert not marker.exists()


# ---- the JavaScript example ---------------------------------------------------

@needs_node
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_javascript_example_agrees_with_the_truth(dtype):
    from bpcheck.diagnose.search import judge_case
    with SubprocessBackend(f"node {REPO / 'examples' / 'mlp.js'}") as backend:
        assert "gelu" not in backend.start()["activations"]        # no erf in JavaScript: declared, not faked
        for loss, activation in [("mse", "tanh"), ("softmax_cross_entropy", "relu"),
                                 ("binary_cross_entropy", "silu"), ("bce_with_logits", "gelu_tanh")]:
            judged = judge_case(vector_case(loss, activation, dtype), backend)
            assert judged.error is None and not [r for r in judged.rows if r["class"] != "pass"], judged.rows
