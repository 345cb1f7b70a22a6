"""Normalisation layers: batch norm (1-d and spatial, training mode), layer norm, RMS norm, group norm.

One core: over the normalised axes A,

    mu = mean_A(x),  var = mean_A((x - mu)^2)  (biased, 1/n),  inv = 1 / sqrt(var + eps)
    xhat = (x - mu) inv,   out = gamma xhat + beta

and its VJP in closed form (Ioffe & Szegedy 2015, §3; CS231n's batchnorm_backward_alt):

    dxhat = gamma dout,  dgamma = sum(dout xhat),  dbeta = sum(dout)  (over every axis gamma is broadcast on)
    dx = inv (dxhat - mean_A(dxhat) - xhat mean_A(dxhat xhat))

RMS norm (Zhang & Sennrich 2019) drops the mean: inv = 1 / sqrt(mean_A(x^2) + eps), xhat = x inv,
dx = inv (dxhat - xhat mean_A(dxhat xhat)). Frameworks and CS231n normalise with the biased variance in
training mode and put eps inside the square root (torch.nn.functional.batch_norm / layer_norm /
group_norm / rms_norm; jax.nn.standardize with algorithm="stable").
"""
import numpy as np

from bpcheck.ops.record import COMMON_FAMILIES, Draw, Op, Slip

__all__ = ["BATCHNORM", "SPATIAL_BATCHNORM", "LAYERNORM", "RMSNORM", "GROUPNORM"]

FAMILIES = COMMON_FAMILIES + ("constant_features", "large_mean", "small_batch", "axis_size_1",
                              "eps_small", "eps_large")
EPS = {"eps_small": 1e-12, "eps_large": 1.0}


# --- the generic definition ---------------------------------------------------------------------

def _stats(ns, x, axes, eps, centre=True):
    mu = ns.mean(x, axes, keepdims=True) if centre else None
    xc = x - mu if centre else x
    var = ns.mean(xc * xc, axes, keepdims=True)
    inv = 1 / ns.sqrt(var + ns.const(eps))
    return xc * inv, inv


def _forward(ns, x, gamma, beta, axes, eps, centre=True):
    xhat, _ = _stats(ns, x, axes, eps, centre)
    out = xhat * gamma
    return out + beta if beta is not None else out


def _vjp(ns, x, gamma, axes, eps, dout, param_axes, centre=True, *, terms=(True, True)):
    xhat, inv = _stats(ns, x, axes, eps, centre)
    dxhat = dout * gamma
    inner = dxhat
    if centre and terms[0]:
        inner = inner - ns.mean(dxhat, axes, keepdims=True)
    if terms[1]:
        inner = inner - xhat * ns.mean(dxhat * xhat, axes, keepdims=True)
    return {"x": inv * inner, "gamma": ns.sum(dout * xhat, param_axes, keepdims=True),
            "beta": ns.sum(dout, param_axes, keepdims=True)}


def _shaped(grads, a):
    """Parameter gradients reshaped to their parameters' shapes."""
    return {k: (g.reshape(a[k].shape) if k != "x" else g) for k, g in grads.items() if k in a}


# --- drawing ------------------------------------------------------------------------------------

def _values(rng, shape, dtype, family, axes):
    """Inputs of ``family``: a constant slice along the normalised axes, or a large mean over a small
    spread (mu / sigma from 10^2 to 10^4), else standard normal with random scales."""
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3.0)
    if family == "large_mean":                            # mean / spread of each slice itself: 10^2..10^4
        spread = np.std(x, axis=axes, keepdims=True)
        ratio = 10.0 ** rng.uniform(2.05, 4, size=spread.shape)
        x = x + ratio * np.where(spread > 0, spread, 1.0) * rng.choice([-1, 1])
    if family == "constant_features":
        keep = [0 if i in axes else slice(None) for i in range(len(shape))]
        first = np.expand_dims(x[tuple(keep)], axes)
        x = np.broadcast_to(first, shape).copy()                          # every slice exactly constant
    return x.astype(dtype)


def _params(rng, shape, dtype, beta=True, family="plain"):
    """gamma (and beta); under a uniform cotangent gamma is one value throughout, as initialised,
    which makes the exact input gradient 0 (a gamma varying along the normalised axes does not)."""
    gamma = np.full(shape, rng.uniform(0.5, 2.0)) if family == "uniform_cotangent" else rng.standard_normal(shape) * 1.5
    p = {"gamma": gamma.astype(dtype)}
    if beta:
        p["beta"] = rng.standard_normal(shape).astype(dtype)
    return p


def _eps(rng, family):
    return EPS.get(family, float(rng.choice([1e-5, 1e-3])))


# --- batch norm ---------------------------------------------------------------------------------

def _bn_draw(spatial):
    def draw(rng, family, dtype):
        n = {"small_batch": int(rng.integers(1, 3)), "axis_size_1": 1}.get(family, int(rng.integers(2, 7)))
        n = max(n, 2) if family == "large_mean" else n
        if spatial:
            c = int(rng.integers(1, 4))
            h, w = (1, 1) if family == "axis_size_1" else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
            shape, axes = (n, c, h, w), (0, 2, 3)
        else:
            shape, axes = (n, int(rng.integers(1, 6))), (0,)
        x = _values(rng, shape, dtype, family, axes)
        return Draw({"x": x, **_params(rng, (shape[1],), dtype, family=family)}, {}, {"eps": _eps(rng, family)})
    return draw


def _bn_axes(a):
    return ((0,), (0,)) if len(a["x"].shape) == 2 else ((0, 2, 3), (0, 2, 3))


def _bn_param(ns, p, ndim):
    return p if ndim == 2 else p.reshape(1, -1, 1, 1)


def _bn_forward(ns, a, c, h):
    axes, _ = _bn_axes(a)
    nd = len(a["x"].shape)
    return _forward(ns, a["x"], _bn_param(ns, a["gamma"], nd), _bn_param(ns, a["beta"], nd), axes, h["eps"])


def _bn_vjp(ns, a, c, h, dout, **kw):
    axes, param_axes = _bn_axes(a)
    nd = len(a["x"].shape)
    return _shaped(_vjp(ns, a["x"], _bn_param(ns, a["gamma"], nd), axes, h["eps"], dout, param_axes, **kw), a)


def _bn_torch(torch, a, c, h):
    return torch.nn.functional.batch_norm(a["x"], None, None, a["gamma"], a["beta"], training=True,
                                          eps=h["eps"])


def _bn_jax(jax, a, c, h):
    x = a["x"]
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
    xhat = jax.nn.standardize(x, axis=axes, epsilon=h["eps"], algorithm="stable")
    return xhat * a["gamma"].reshape(shape) + a["beta"].reshape(shape)


def _one_value(a, c, h):
    """torch's batch_norm in training mode raises for one value per channel (N H W = 1)."""
    x = a["x"]
    per_channel = x.shape[0] * (x.shape[2] * x.shape[3] if x.ndim == 4 else 1)
    return "one value per channel in training mode (torch raises ValueError)" if per_channel == 1 else None


def _gn_one_value(a, c, h):
    """torch's group_norm raises for one value per group (C/G H W = 1), as batch_norm does."""
    x = a["x"]
    per_group = x.shape[1] // h["G"] * x.shape[2] * x.shape[3]
    return "one value per group (torch raises ValueError)" if per_group == 1 else None


def _bn_call(fwd, a, c, h):
    return fwd(a["x"], a["gamma"], a["beta"], {"mode": "train", "eps": h["eps"], "momentum": 0.9})


def _three(result):
    dx, dgamma, dbeta = result
    return {"x": dx, "gamma": dgamma, "beta": dbeta}


def _slips(kind):
    """The public reports' batch/layer/group norm slips, as VJPs."""
    return (
        Slip("no_mean_term", f"matches {kind} backward without the mean(dxhat) (Σdy) term",
             lambda ns, a, c, h, dout: {"x": _VJPS[kind](ns, a, c, h, dout, terms=(False, True))["x"]}),
        Slip("no_xhat_term", f"matches {kind} backward without the xhat·mean(dxhat·xhat) term",
             lambda ns, a, c, h, dout: {"x": _VJPS[kind](ns, a, c, h, dout, terms=(True, False))["x"]}),
    )


def _shrink_rows(draw):
    """Drop one example (batch row) at a time, keeping at least one."""
    n = next(iter(draw.inputs.values())).shape[0]
    for i in range(n if n > 1 else 0):
        keep = [j for j in range(n) if j != i]
        yield Draw({k: (v[keep] if k == "x" else v) for k, v in draw.inputs.items()}, draw.constants, draw.hyper)


def _shrink_features(draw):
    """Drop one feature of a 2-d normalisation input (and its gamma, beta entries)."""
    d = draw.inputs["x"].shape[1]
    for i in range(d if d > 1 else 0):
        keep = [j for j in range(d) if j != i]
        yield Draw({k: (v[:, keep] if v.ndim == 2 else v[keep]) for k, v in draw.inputs.items()},
                   draw.constants, draw.hyper)


def _shrink_2d(draw):
    yield from _shrink_rows(draw)
    if draw.inputs["x"].ndim == 2:
        yield from _shrink_features(draw)


BATCHNORM = Op(
    name="batchnorm",
    definition="batch norm, training mode, x (N, D): normalise each feature over the batch with the "
               "biased variance, out = gamma xhat + beta (Ioffe & Szegedy 2015)",
    inputs=("x", "gamma", "beta"), forward=_bn_forward, vjp=_bn_vjp, draw=_bn_draw(False), families=FAMILIES,
    torch=_bn_torch, jax=_bn_jax, limits=(("torch", _one_value),),
    cs231n=("batchnorm_forward", "batchnorm_backward", _bn_call, _three),
    slips=_slips("batchnorm"), shrink=_shrink_2d)

SPATIAL_BATCHNORM = Op(
    name="spatial_batchnorm",
    definition="batch norm, training mode, x (N, C, H, W): normalise each channel over N, H and W",
    inputs=("x", "gamma", "beta"), forward=_bn_forward, vjp=_bn_vjp, draw=_bn_draw(True), families=FAMILIES,
    torch=_bn_torch, jax=_bn_jax, limits=(("torch", _one_value),),
    cs231n=("spatial_batchnorm_forward", "spatial_batchnorm_backward", _bn_call, _three),
    slips=_slips("spatial_batchnorm"), shrink=_shrink_rows)


# --- layer norm and RMS norm --------------------------------------------------------------------

def _ln_draw(beta):
    def draw(rng, family, dtype):
        n = {"small_batch": int(rng.integers(1, 3))}.get(family, int(rng.integers(1, 5)))
        d = 1 if family == "axis_size_1" else int(rng.integers(2, 9))
        x = _values(rng, (n, d), dtype, family, (1,))
        return Draw({"x": x, **_params(rng, (d,), dtype, beta, family)}, {}, {"eps": _eps(rng, family)})
    return draw


def _ln_forward(ns, a, c, h):
    return _forward(ns, a["x"], a["gamma"], a.get("beta"), (1,), h["eps"], centre="beta" in a)


def _ln_vjp(ns, a, c, h, dout, **kw):
    return _shaped(_vjp(ns, a["x"], a["gamma"], (1,), h["eps"], dout, (0,), centre="beta" in a, **kw), a)


def _ln_call(fwd, a, c, h):
    return fwd(a["x"], a["gamma"], a["beta"], {"eps": h["eps"]})


def _rms_call(fwd, a, c, h):
    return fwd(a["x"], a["gamma"], {"eps": h["eps"]})


def _two(result):
    dx, dgamma = result
    return {"x": dx, "gamma": dgamma}


LAYERNORM = Op(
    name="layernorm",
    definition="layer norm, x (N, D): normalise each row over D with the biased variance, "
               "out = gamma xhat + beta (Ba, Kiros & Hinton 2016)",
    inputs=("x", "gamma", "beta"), forward=_ln_forward, vjp=_ln_vjp, draw=_ln_draw(True), families=FAMILIES,
    torch=lambda torch, a, c, h: torch.nn.functional.layer_norm(
        a["x"], a["x"].shape[1:], a["gamma"], a["beta"], h["eps"]),
    jax=lambda jax, a, c, h: jax.nn.standardize(a["x"], axis=1, epsilon=h["eps"], algorithm="stable")
    * a["gamma"] + a["beta"],
    cs231n=("layernorm_forward", "layernorm_backward", _ln_call, _three),
    slips=_slips("layernorm"), shrink=_shrink_2d)

RMSNORM = Op(
    name="rmsnorm",
    definition="RMS norm, x (N, D): out = gamma x / sqrt(mean_D(x^2) + eps) (Zhang & Sennrich 2019)",
    inputs=("x", "gamma"), forward=_ln_forward, vjp=_ln_vjp, draw=_ln_draw(False),
    families=tuple(f for f in FAMILIES if f != "large_mean"),
    torch=lambda torch, a, c, h: torch.nn.functional.rms_norm(a["x"], a["x"].shape[1:], a["gamma"], h["eps"]),
    jax=lambda jax, a, c, h: jax.nn.standardize(a["x"], axis=1, mean=0.0, epsilon=h["eps"],
                                                algorithm="stable") * a["gamma"],
    cs231n=("rmsnorm_forward", "rmsnorm_backward", _rms_call, _two),
    slips=(Slip("no_xhat_term", "matches rmsnorm backward without the xhat·mean(dxhat·xhat) term",
                lambda ns, a, c, h, dout: {"x": _ln_vjp(ns, a, c, h, dout, terms=(True, False))["x"]}),),
    shrink=_shrink_2d)


# --- group norm ---------------------------------------------------------------------------------

def _gn_draw(rng, family, dtype):
    groups = int(rng.integers(1, 4))
    c = groups * (1 if family == "axis_size_1" else int(rng.integers(1, 3)))
    n = {"small_batch": 1}.get(family, int(rng.integers(1, 4)))
    hw = (1, 1) if family == "axis_size_1" else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    shape = (n, c) + hw
    per_group = (n, groups, c // groups * hw[0] * hw[1])          # the normalised slices, one per row
    x = _values(rng, per_group, dtype, family, (2,)).reshape(shape) if family != "constant_features" else None
    if x is None:                                           # constant over each group, as the axes say
        x = np.repeat(rng.standard_normal((n, groups, 1, 1, 1)), c // groups, axis=2)
        x = np.broadcast_to(x, (n, groups, c // groups) + hw).reshape(shape).astype(dtype)
    p = _params(rng, (1, c, 1, 1), dtype, family=family)
    return Draw({"x": x, **p}, {}, {"G": groups, "eps": _eps(rng, family)})


def _grouped(a, h):
    n, c, hh, ww = a["x"].shape
    g = h["G"]
    return (n, g, c // g, hh, ww), (1, g, c // g, 1, 1)


def _gn_forward(ns, a, c, h):
    xs, ps = _grouped(a, h)
    out = _forward(ns, a["x"].reshape(xs), a["gamma"].reshape(ps), a["beta"].reshape(ps), (2, 3, 4), h["eps"])
    return out.reshape(a["x"].shape)


def _gn_vjp(ns, a, c, h, dout, **kw):
    xs, ps = _grouped(a, h)
    grads = _vjp(ns, a["x"].reshape(xs), a["gamma"].reshape(ps), (2, 3, 4), h["eps"], dout.reshape(xs),
                 (0, 3, 4), **kw)
    return {"x": grads["x"].reshape(a["x"].shape), "gamma": grads["gamma"].reshape(a["gamma"].shape),
            "beta": grads["beta"].reshape(a["beta"].shape)}


GROUPNORM = Op(
    name="groupnorm",
    definition="group norm, x (N, C, H, W), G groups: normalise each (example, group of C/G channels) over "
               "its channels, H and W; gamma, beta (1, C, 1, 1) per channel (Wu & He 2018)",
    inputs=("x", "gamma", "beta"), forward=_gn_forward, vjp=_gn_vjp, draw=_gn_draw,
    families=tuple(f for f in FAMILIES if f != "small_batch"),
    torch=lambda torch, a, c, h: torch.nn.functional.group_norm(
        a["x"], h["G"], a["gamma"].reshape(-1), a["beta"].reshape(-1), h["eps"]),
    limits=(("torch", _gn_one_value),),
    jax=lambda jax, a, c, h: (jax.nn.standardize(
        a["x"].reshape(_grouped(a, h)[0]), axis=(2, 3, 4), epsilon=h["eps"], algorithm="stable")
        .reshape(a["x"].shape) * a["gamma"] + a["beta"]),
    cs231n=("spatial_groupnorm_forward", "spatial_groupnorm_backward",
            lambda fwd, a, c, h: fwd(a["x"], a["gamma"], a["beta"], h["G"], {"eps": h["eps"]}), _three),
    slips=_slips("groupnorm"), shrink=_shrink_rows)

_VJPS = {"batchnorm": _bn_vjp, "spatial_batchnorm": _bn_vjp, "layernorm": _ln_vjp, "groupnorm": _gn_vjp}
