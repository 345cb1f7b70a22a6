"""The padded, batched JAX oracle against a plain JAX network, one case at a time.

``backprop_many`` pads every case to a shape bucket, stacks cases into chunks
and picks activations and losses at run time; ``unpadded`` below is the
straightforward alternative: the case's own shapes, its activations and loss
as Python functions, ``jax.jit(jax.value_and_grad(...))`` compiled per case
(cheaper than running eagerly, which compiles every primitive per shape).
Padding may change the order of floating-point sums and nothing else, so the
two agree to TOL of each tensor's scale. The scale has a floor of the case's largest value of the same
kind (forward: x, z, a, loss; backward: gradients, deltas and dC/da), because a
tensor that cancels to ~0, or is scaled down by a small f' (gelu_tanh far
left), still carries the rounding of the larger terms it came from. A ReLU
input that changes sign under reordering (a kink) is a legitimate difference:
such a case is compared forward only. NaN and inf must sit exactly where the
plain network has them (saturated and overflowing cases are drawn too).
"""
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import given, note, settings
from hypothesis import strategies as st

from bpcheck.cases import strategies as bst
from bpcheck.core.spec import ACTIVATIONS, DTYPES, LOSSES, Case
from bpcheck.judge.classify import one_sided
from oracles import jax_oracle

TOL = {"float32": 1e-5, "float64": 1e-12}
# The plain network compiles once per case: keep the lists few.
EXAMPLES = max(2, settings().max_examples // 15)  # dev 2, ci 13, thorough 333

ACT = {
    "identity": lambda z: z,
    "relu": jax.nn.relu,
    "leaky_relu": lambda z: jnp.where(z > 0, z, 0.01 * z),
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
    "elu": jax.nn.elu,
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),
    "gelu_tanh": lambda z: jax.nn.gelu(z, approximate=True),
    "silu": jax.nn.silu,
}
LOSS = {
    "sse": lambda a, y: 2 * jnp.sum(optax.l2_loss(a, y)),
    "half_sse": lambda a, y: jnp.sum(optax.l2_loss(a, y)),
    "mse": lambda a, y: jnp.mean(optax.squared_error(a, y)),
    "quadratic": lambda a, y: jnp.sum(optax.squared_error(a, y)) / (2 * a.shape[0]),
    "binary_cross_entropy": lambda a, y: -jnp.mean(y * jnp.log(a) + (1 - y) * jnp.log1p(-a)),
    "bce_with_logits": lambda z, y: jnp.mean(optax.sigmoid_binary_cross_entropy(z, y)),
    "softmax_cross_entropy": lambda z, y: jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(z, y)),
}


@functools.lru_cache(maxsize=None)
def _plain(activations, loss):
    """value_and_grad of the plain network; jit compiles it once per shape and dtype."""
    def network(params, x, dz, da, y):
        a, zs, acts = x, [], []
        for i, name in enumerate(activations):
            z = a @ params[f"layers.{i}.W"].T + params[f"layers.{i}.b"] + dz[i]
            a = ACT[name](z) + da[i]
            zs.append(z)
            acts.append(a)
        return LOSS[loss](a, y), (zs, acts)
    return jax.jit(jax.value_and_grad(network, argnums=(0, 1, 2, 3), has_aux=True))


def unpadded(case):
    """The case's network at its own shapes; also dC/da per layer (for the scale)."""
    spec, dtype = case.spec, case.spec["dtype"]
    layers = spec["layers"]
    params = {k: jnp.asarray(v, dtype) for k, v in case.params.items()}
    y = jnp.asarray(case.y, np.int64 if spec["loss"] == "softmax_cross_entropy" else dtype)
    zeros = [jnp.zeros((case.batch, layer["units"]), dtype) for layer in layers]
    grad = _plain(tuple(layer["activation"] for layer in layers), spec["loss"])
    x = jnp.asarray(case.x, dtype)
    (loss, (zs, acts)), (g_params, g_x, deltas, g_acts) = grad(params, x, zeros, zeros, y)
    by_layer = lambda ts: {f"layers.{i}": np.asarray(t) for i, t in enumerate(ts)}
    return {"loss": float(loss), "grads": {k: np.asarray(v) for k, v in g_params.items()},
            "input_grad": np.asarray(g_x), "pre_activations": by_layer(zs), "activations": by_layer(acts),
            "deltas": by_layer(deltas), "activation_grads": by_layer(g_acts)}


def _max(tensors):
    """Largest finite magnitude."""
    return max(float(np.max(np.abs(t[np.isfinite(t)]), initial=0)) for t in map(np.asarray, tensors))


def mismatches(case, got, want):
    """What differs by more than TOL x scale, as readable strings (empty: agreement)."""
    dtype = np.dtype(case.spec["dtype"])
    forward = [case.x, *want["pre_activations"].values(), *want["activations"].values()]
    backward = [want["input_grad"], *want["grads"].values(), *want["deltas"].values(),
                *want["activation_grads"].values()]
    floors = {"forward": _max(forward + [np.array(want["loss"])]), "backward": _max(backward)}
    pairs = [("forward", "loss", np.array(got["loss"]), np.array(want["loss"]))]
    for kind in ("pre_activations", "activations"):
        pairs += [("forward", f"{kind}[{k}]", got[kind][k], v) for k, v in want[kind].items()]
    kinks = [k for k, layer in zip(want["pre_activations"], case.spec["layers"])
             if one_sided(layer["activation"]) is not None
             and np.any((got["pre_activations"][k] > 0) != (want["pre_activations"][k] > 0))]
    if kinks:
        note(f"kink crossed by reordering in {kinks}: compared forward only")
    else:
        pairs += [("backward", "input_grad", got["input_grad"], want["input_grad"])]
        pairs += [("backward", f"grads[{k}]", got["grads"][k], v) for k, v in want["grads"].items()]
        pairs += [("backward", f"deltas[{k}]", got["deltas"][k], v) for k, v in want["deltas"].items()]
    bad = []
    for kind, name, g, w in pairs:
        if name != "loss" and (g.shape != w.shape or g.dtype != dtype):
            bad.append(f"{name}: got {g.dtype}{g.shape}, expected {dtype}{w.shape}")
            continue
        finite = np.isfinite(w)
        same_nonfinite = np.array_equal(g[~finite], w[~finite], equal_nan=True)
        if not same_nonfinite or not np.all(np.isfinite(g[finite])):
            bad.append(f"{name}: NaN/inf where the plain network has {g[~finite | ~np.isfinite(g)]}")
            continue
        scale = max(_max([w]), floors[kind], np.finfo(dtype).tiny)
        err = np.max(np.abs(g[finite].astype(np.float64) - w[finite]), initial=0) / scale
        if not err <= TOL[case.spec["dtype"]] and not within_rounding(case, name, g, w):
            bad.append(f"{name}: error {err:.3g} x scale {scale:.3g}")
    return bad


def within_rounding(case, name, g, w):
    """Whether two results differ by no more than two implementations of the definitions may: each is
    within bpcheck's allowed error of the truth (a case whose pre-activations cancel, b = 1389 against
    a W = -1290 to land z near 100, lets the order of summation move a float32 gradient by more than
    TOL x its scale)."""
    from bpcheck.core.rounding import norm2
    from bpcheck.exact.truth import exact
    from bpcheck.judge.bounds import running_bounds
    from bpcheck.judge.compare import SAFETY, allowed_error
    where = re.fullmatch(r"(grads|deltas|activations)\[layers\.(\d+)(?:\.(W|b))?\]|(input_grad|loss)", name)
    if where is None:
        return False
    kind, layer, param, whole = where.groups()
    tensor = whole or param or {"deltas": "delta", "activations": "activation"}[kind]
    layer = None if whole else int(layer)
    truth = exact(case)
    bounds = running_bounds(case, truth, safety=SAFETY)
    allowed = allowed_error(bounds, layer, tensor, case.spec["dtype"], np.size(w), truth_norm=norm2(w))
    return bool(norm2(np.asarray(g, np.float64) - np.asarray(w, np.float64)) <= 2 * allowed)


def check_all(cases, results):
    assert len(results) == len(cases)
    failures = []
    for i, (case, got) in enumerate(zip(cases, results)):
        assert set(got["grads"]) == set(case.params)
        bad = mismatches(case, got, unpadded(case))
        if bad:
            failures.append(f"case {i} {case.spec} batch {case.batch}: " + "; ".join(bad))
    assert not failures, "\n".join(failures)


def _items(cases):
    return [(c.spec, c.params, c.x, c.y) for c in cases]


def _with_activations(spec_strategy, activations):
    """Specs from ``spec_strategy`` whose first layers get exactly ``activations``."""
    def put(spec):
        for layer, name in zip(spec["layers"], activations):
            layer["activation"] = name
        return spec
    return spec_strategy.map(put)


def _cases(spec_strategy=None, **options):
    # Arrays from one drawn seed each: a list of fully drawn cases overruns Hypothesis's budget.
    return bst.cases(spec_strategy, arrays="seeded", **options)


@st.composite
def mixed_cases(draw):
    """A shuffled list holding every activation and loss, both dtypes, depth 1 and
    depth 6 side by side, batch 1, one-unit layers, a 2-class softmax, a case
    deeper than the default bucket, and a few cases of any family."""
    order = draw(st.permutations(ACTIVATIONS))
    deep = lambda loss, dtype: bst.specs(losses=[loss], dtypes=[dtype], min_depth=6, max_depth=6)
    parts = [_cases(_with_activations(deep("sse", "float32"), order[:6])),
             _cases(_with_activations(deep("half_sse", "float64"), order[6:]))]
    for k, loss in enumerate(LOSSES):
        options = dict(losses=[loss], dtypes=[DTYPES[k % 2]], max_depth=1 if k < 2 else 6)
        if loss == "softmax_cross_entropy":
            options["max_width"] = 2
        parts.append(_cases(bst.specs(**options)))
    parts += [_cases(families=["batch1"]), _cases(families=["one_unit"], min_depth=2),
              _cases(bst.specs(min_depth=7, max_depth=7, dtypes=["float64"]))]
    others = [f for f in bst.FAMILIES if f != "wide_batch"]  # batch 32-128: more buckets to compile
    cases = [draw(p) for p in parts] + draw(st.lists(_cases(families=others), max_size=3))
    return draw(st.permutations(cases))


@settings(max_examples=EXAMPLES)
@given(cases=mixed_cases())
def test_backprop_many_matches_unpadded_jax(cases):
    check_all(cases, jax_oracle.backprop_many(_items(cases)))


def test_no_cases_no_results():
    assert jax_oracle.backprop_many([]) == []


def _scalar_case(activation, z, dtype):
    """x = 1, one unit with W = z (so the first z is exactly z), then a damped
    identity layer into bce_with_logits, which stays finite for huge logits."""
    spec = {"input_dim": 1, "loss": "bce_with_logits", "dtype": dtype,
            "layers": [{"units": 1, "activation": activation}, {"units": 1, "activation": "identity"}]}
    arr = lambda v: np.array(v, dtype)
    params = {"layers.0.W": arr([[z]]), "layers.0.b": arr([0]),
              "layers.1.W": arr([[1e-3]]), "layers.1.b": arr([0])}
    return Case(spec, params, arr([[1]]), arr([[0.5]]))


def test_unselected_activation_cannot_poison_the_gradient():
    # The hazard is real: selecting among all activations evaluated on z puts
    # gelu_tanh's NaN gradient (float32, |z| = 1e30) into relu's.
    def naive(z):
        return jax.lax.select_n(jnp.int32(1), *[f(z) for f in ACT.values()])
    assert np.isnan(jax.grad(naive)(jnp.float32(1e30)))
    assert jax.grad(lambda z: jax_oracle._activate(jnp.int32(1), z, True))(jnp.float32(1e30)) == 1

    huge = {"float32": 1e30, "float64": 1e200}
    cases = [_scalar_case(a, s * z, d) for d in DTYPES for a in ACTIVATIONS
             for z in (0.0, 1000.0, huge[d]) for s in (1, -1)]
    results = jax_oracle.backprop_many(_items(cases))
    compared = total = 0
    for case, got in zip(cases, results):
        want = unpadded(case)
        tensors = [("loss", np.array(got["loss"]), np.array(want["loss"])),
                   ("input_grad", got["input_grad"], want["input_grad"])]
        tensors += [(f"{kind}[{k}]", got[kind][k], v)
                    for kind in ("grads", "deltas", "pre_activations", "activations")
                    for k, v in want[kind].items()]
        for name, g, w in tensors:
            finite = np.isfinite(w)
            where = f"{case.spec['layers'][0]['activation']} at z = {case.params['layers.0.W'][0, 0]}: {name}"
            assert np.all(np.isfinite(g[finite])), f"{where}: {g} where the plain network has {w}"
            scale = max(_max([w[finite]]), 1.0)
            close = np.abs(g[finite] - w[finite]) <= TOL[case.spec["dtype"]] * scale
            assert np.all(close), f"{where}: {g} vs {w}"
            compared, total = compared + int(finite.sum()), total + w.size
    assert compared > 0.9 * total  # the plain network is finite nearly everywhere here


def test_a_broken_padding_is_caught(monkeypatch):
    """Known bad: count padded batch rows in the loss; the comparison must fail."""
    rng = np.random.default_rng(0)
    spec = {"input_dim": 3, "loss": "mse", "dtype": "float64",
            "layers": [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "identity"}]}
    params = {"layers.0.W": rng.standard_normal((4, 3)), "layers.0.b": rng.standard_normal(4),
              "layers.1.W": rng.standard_normal((2, 4)), "layers.1.b": rng.standard_normal(2)}
    case = Case(spec, params, rng.standard_normal((3, 3)), rng.standard_normal((3, 2)))
    control = jax_oracle.backprop_many(_items([case, case]))[0]  # the chunk function the other tests use
    assert not mismatches(case, control, unpadded(case))

    correct = jax_oracle._loss

    def rows_unmasked(code, a, y, labels, rows, units):
        return correct(code, a, y, labels, jnp.full_like(rows, a.shape[0]), units)

    monkeypatch.setattr(jax_oracle, "_loss", rows_unmasked)
    monkeypatch.setattr(jax_oracle, "_compiled", jax.jit(jax.vmap(jax_oracle._one_case)))
    bad = mismatches(case, jax_oracle.backprop(*_items([case])[0]), unpadded(case))
    assert any(b.startswith("loss") for b in bad) and any(b.startswith("grads") for b in bad), bad
