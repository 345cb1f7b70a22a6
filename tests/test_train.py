"""Training judged step by step (teacher forcing), the free-running envelope, and the tutorials' examples.

- Two correct trainers written differently (``reference/optim.py``; ``examples/torch_optim.py``, torch.optim's
  own classes) pass K = 50 steps of every optimizer in both dtypes.
- Every member of ``tests/meta/train_zoo`` fails on every seed at its first wrong step with its hint; a
  step that overwrites its gradient, or raises, is a failure with its reason; CS231n's velocity form of
  momentum passes.
- The tolerance: a quarter of each parameter's allowed error passes; an error of 10^-3 of the step (of
  10^-13 in float64) in one parameter is caught on nine tensors in ten.
- The envelope: a correct run stays inside it, a wrong one leaves it by orders of magnitude; it never
  changes a verdict.
- Tutorial 002's descent reaches x = 2.25, tutorial 000's neuron reaches y^ = 10, tutorial 003's layer
  learns, each step judged.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bpcheck.opcheck.candidates import CandidateFatal, load_module
from bpcheck.train.check import check_training
from bpcheck.train.envelope import envelope
from bpcheck.train.optimizers import OPTIMIZERS
from bpcheck.train.protocol import step_program
from bpcheck.train.running import check_running, cs231n_running
from bpcheck.train.seeds import SEED_ARCHITECTURES
from bpcheck.train.teacher import draw_train_case, judge_steps
from reference import layers, optim

ROOT = Path(__file__).resolve().parents[1]
TORCH_OPTIM = load_module(ROOT / "examples" / "torch_optim.py")
ZOO = sorted((ROOT / "tests" / "meta" / "train_zoo").glob("bug_*.py"))
DECAY = {"sgd": 0.01, "momentum": 0.01, "nesterov": 0.01, "adam": 0.01}


@pytest.mark.parametrize("trainer", [optim, TORCH_OPTIM], ids=["reference", "torch.optim"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_two_correct_trainers_pass_fifty_steps_of_every_optimizer(name, trainer):
    hyper = {"weight_decay": DECAY[name]} if name in DECAY else {}
    report = check_training("residual_mlp", name, getattr(trainer, name), hyper=hyper, steps=50, cases=1)
    assert report.verdict == "pass" and report.steps == 100, report.summary()


@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_every_zoo_member_fails_on_every_seed_at_its_step_with_its_hint(path):
    member = load_module(path)
    want = member.EXPECTED
    for seed in range(10):
        report = check_training("residual_mlp", want["optimizer"], member.step, hyper=want["hyper"], steps=4,
                                cases=1, dtypes=("float32",), seed=seed)
        assert report.verdict == "fail", f"{path.name} passed on seed {seed}"
        assert report.first["step"] == want["step"], report.summary()
        assert any(want["hint"] in h for h in report.first["hints"]), report.summary()


def test_a_step_that_overwrites_its_gradient_or_raises_fails_with_its_reason():
    def in_place(params, grads, state, hyper):
        for g in grads.values():
            g *= 0.5
        return optim.sgd(params, {k: 2 * g for k, g in grads.items()}, state, hyper)

    def raises(params, grads, state, hyper):
        raise ValueError("shapes")

    report = check_training("tied_embedding", "sgd", in_place, steps=2, cases=1)
    assert report.verdict == "fail" and "overwrote the gradient" in report.summary()
    report = check_training("tied_embedding", "sgd", raises, steps=2, cases=1)
    assert report.verdict == "fail" and "raised ValueError: shapes" in report.summary()


def test_nielsens_network2_update_passes_as_sgd_with_weight_decay():
    network2 = load_module(ROOT / "examples" / "network2.py")
    report = check_training("residual_mlp", "sgd", network2.step, hyper={"weight_decay": 0.05}, steps=50, cases=1)
    assert report.verdict == "pass", report.summary()


def test_a_rule_undefined_at_a_step_stops_the_run_without_a_verdict():
    """Adam with eps = 0 divides 0 by 0 where a gradient is exactly 0 (a dead relu): the rule itself is not
    finite there, so the run stops with the reason instead of judging NaN parameters (or crashing)."""
    def adam_nan_safe(params, grads, state, hyper):
        with np.errstate(all="ignore"):
            return optim.adam(params, grads, state, hyper)

    report = check_training("residual_mlp", "adam", adam_nan_safe, hyper={"eps": 0.0}, steps=5, dtypes=("float32",))
    assert report.stopped and report.verdict in ("none", "pass"), report.summary()
    assert "not a verdict against you" in report.summary()

    def nan_step(params, grads, state, hyper):
        return {k: p * np.nan for k, p in params.items()}, state

    assert check_training("residual_mlp", "sgd", nan_step, steps=2, cases=1).verdict == "fail"


def test_cs231n_momentum_passes():
    def velocity(params, grads, state, hyper):
        state = state or {}
        v = {k: float(hyper["mu"]) * state[k] - float(hyper["lr"]) * g if k in state else -float(hyper["lr"]) * g
             for k, g in grads.items()}
        return {k: p + v[k] for k, p in params.items()}, v

    assert check_training("residual_mlp", "momentum", velocity, steps=20).verdict == "pass"


def _moved_step(inner, size_of, key):
    """A step whose parameter ``key`` is moved, at every step, by ``size_of(step, new, old)``."""
    rng = np.random.default_rng(0)

    def step(params, grads, state, hyper):
        new, state = inner(params, grads, state, hyper)
        d = rng.standard_normal(np.shape(new[key]))
        moved = np.asarray(new[key], np.float64) + size_of(new[key], params[key]) * d / np.linalg.norm(d)
        return {**new, key: moved.astype(new[key].dtype)}, state
    return step


@pytest.mark.parametrize("dtype, rel", [("float32", 1e-3), ("float64", 1e-13)])
def test_an_error_of_a_thousandth_of_the_step_in_one_tensor_is_caught_nine_times_in_ten(dtype, rel):
    """The update rounds at u |p|, far below |p| when the step is small, so the target is relative to the
    step. Measured: 100% in both dtypes; with the tolerance's safety factor ten times larger, 50% (float32)
    and 56% (float64): the test fails when the tolerance is loosened."""
    caught = total = 0
    for name in ("sgd", "adam"):
        case = draw_train_case("residual_mlp", name, dtype, 0)
        for key in case.params:
            size = (lambda new, old: rel * np.linalg.norm(np.asarray(new, np.float64) - old))
            log = judge_steps(draw_train_case("residual_mlp", name, dtype, 0, steps=1),
                              _moved_step(getattr(optim, name), size, key))
            total += 1
            caught += log[-1]["class"] == "bug"
    assert caught >= 0.9 * total, (caught, total)


def test_a_quarter_of_the_tolerance_passes():
    for dtype in ("float32", "float64"):
        case = draw_train_case("residual_mlp", "adam", dtype, 0, steps=1)
        rows = judge_steps(case, optim.adam)[0]["rows"]
        for row in rows:
            log = judge_steps(case, _moved_step(optim.adam, lambda new, old, a=row["allowed"]: a / 4, row["tensor"]))
            assert log[-1]["class"] == "pass", (dtype, row["tensor"])


def test_the_envelope_holds_a_correct_run_and_not_a_wrong_one():
    stuck = load_module(ROOT / "tests" / "meta" / "train_zoo" / "bug_adam_counter_stuck.py").step
    case = draw_train_case("residual_mlp", "adam", "float32", 0, steps=30)
    right, wrong = envelope(case, optim.adam), envelope(case, stuck)
    assert max(right["loss_units"]) < 1, right["loss_units"]
    assert max(wrong["loss_units"]) > 100, wrong["loss_units"]
    assert right["truth"] == wrong["truth"]
    assert len(right["members"]) == 8 and all(len(m) == 30 for m in right["members"])


def _final(arch, lr, steps, dtype):
    kept = []

    def step(params, grads, state, hyper):
        new, state = optim.sgd(params, grads, state, hyper)
        kept.append(new)
        return new, state

    log = judge_steps(draw_train_case(SEED_ARCHITECTURES[arch], "sgd", dtype, 0, steps=steps, hyper={"lr": lr}), step)
    assert [e["class"] for e in log] == ["pass"] * steps
    return kept[-1], log


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tutorial_002_descends_to_the_minimum_at_2_25(dtype):
    final, _ = _final("descent_1d", 0.01, 120, dtype)
    assert abs(float(final["x"][0, 0]) - 2.25) < 1e-5


def test_tutorial_002s_own_loop_settles_at_2_25():
    """The tutorial's while loop as written (from 6, step 0.01, until a move is at most 1e-5)."""
    x, moves = optim.descend(lambda x: 4 * x ** 3 - 9 * x ** 2, 6.0, 0.01, 1e-5)
    assert abs(x - 2.25) < 1e-3 and moves > 10
    with pytest.raises(RuntimeError, match="no convergence"):
        optim.descend(lambda x: 4 * x ** 3 - 9 * x ** 2, 6.0, 0.5, 1e-5, max_steps=50)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tutorial_000_neuron_learns_its_target_10(dtype):
    final, _ = _final("neuron", 0.02, 100, dtype)
    y_hat = 1 * float(final["w"][0, 0]) + 2 * float(final["w"][1, 0]) + float(final["b"][0])
    assert abs(y_hat - 10) < 1e-4


def test_tutorial_003_layer_learns():
    _, log = _final("sigmoid_layer", 0.5, 100, "float64")
    assert log[-1]["loss"] < 0.5 * log[0]["loss"]


def test_the_command_line_exits_0_1_2():
    exe = str(Path(sys.executable).parent / "bpcheck")

    def run(*args):
        return subprocess.run([exe, "train", *args], capture_output=True, text=True, timeout=300, cwd=ROOT)

    ok = run("tied_embedding", "--optimizer", "adam", "--step", "reference/optim.py:adam", "--steps", "3")
    assert ok.returncode == 0 and "PASS" in ok.stdout, ok.stdout + ok.stderr
    bad = run("tied_embedding", "--optimizer", "sgd", "--step", "tests/meta/train_zoo/bug_sgd_not_zeroed.py:step")
    assert bad.returncode == 1 and "first wrong step: 2" in bad.stdout, bad.stdout
    for args in (("cnn", "--optimizer", "sgd", "--step", "missing.py:f"),
                 ("cnn", "--optimizer", "sgd", "--step", "reference/optim.py:sgd", "--hyper", "beta=1"),
                 ("cnn", "--optimizer", "sgd")):
        assert run(*args).returncode == 2, args


# --- batch norm's running statistics ---------------------------------------------------------------

def _torch_running(x, running_mean, running_var, momentum):
    """torch's own batch_norm in training mode, which updates the running tensors in place."""
    rm, rv = torch.tensor(running_mean), torch.tensor(running_var)
    torch.nn.functional.batch_norm(torch.tensor(x), rm, rv, training=True, momentum=momentum)
    return rm.numpy(), rv.numpy()


def _biased(x, running_mean, running_var, momentum):
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    return ((1 - momentum) * running_mean + momentum * x.mean(axis=axes),
            (1 - momentum) * running_var + momentum * x.var(axis=axes))


@pytest.mark.parametrize("spatial", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_running_statistics_each_convention_passes_and_the_other_is_named(dtype, spatial):
    cs231n = cs231n_running(layers)
    assert check_running(cs231n, "cs231n", dtype=dtype, spatial=spatial)["verdict"] == "pass"
    assert check_running(_torch_running, "torch", dtype=dtype, spatial=spatial)["verdict"] == "pass"
    crossed = check_running(cs231n, "torch", dtype=dtype, spatial=spatial)
    assert crossed["verdict"] == "fail" and "momentum read the CS231n way" in " ".join(crossed["first"]["hints"])
    biased = check_running(_biased, "torch", dtype=dtype, spatial=spatial)
    assert biased["verdict"] == "fail" and biased["first"]["step"] == 1
    assert "running variance stored biased" in " ".join(biased["first"]["hints"])


# --- over the line protocol ---------------------------------------------------------------------

def test_an_optimizer_program_passes_and_a_wrong_one_is_named():
    step, close = step_program([sys.executable, str(ROOT / "examples" / "optim_program.py")], "adam")
    try:
        assert check_training("residual_mlp", "adam", step, steps=5).verdict == "pass"
    finally:
        close()
    member = ROOT / "tests" / "meta" / "train_zoo" / "bug_adam_counter_stuck.py"
    hostile = ROOT / "tests" / "hostile" / "zoo_program.py"
    step, close = step_program([sys.executable, str(hostile), str(member)], "adam")
    try:
        report = check_training("residual_mlp", "adam", step, steps=5)
    finally:
        close()
    assert report.verdict == "fail" and report.first["step"] == 2
    assert any("step counter is not advanced" in h for h in report.first["hints"])
    step, close = step_program([sys.executable, str(hostile), str(member), "nohello"], "adam")
    try:
        report = check_training("residual_mlp", "adam", step, steps=5)
    finally:
        close()
    assert report.verdict == "none" and "leaves out adam" in report.summary()


def test_a_program_that_hangs_or_has_no_hello_stops_the_run():
    for command in ([sys.executable, "-c", "print(1)"],
                    [sys.executable, "-c", "import sys, time; print('{\"protocol\": \"bpcheck-op/1\", \"ops\": [], "
                                           "\"optimizers\": [\"sgd\"], \"dtypes\": [\"float32\", \"float64\"]}', "
                                           "flush=True); time.sleep(60)"]):
        step, close = step_program(command, "sgd", timeout=0.5)
        try:
            with pytest.raises(CandidateFatal):
                check_training("residual_mlp", "sgd", step, steps=3)
        finally:
            close()
