"""Max-pool ties: any convex combination of a window's tied maxima is an admissible gradient (class
``tie``), so a backward pass that routes a tie to the first, the last, or splits it (evenly or not)
passes on every seed in both dtypes -- overlapping windows included -- and one that sends the full
gradient to every tied maximum fails. The tie rules are written here as CS231n-style modules."""
import types

import numpy as np
import pytest

from bpcheck.opcheck.check import check_op

SEEDS = range(10)


def _module(rule):
    """A CS231n-style max-pool (``max_pool_forward_naive`` / ``_backward_naive``) routing each window's
    cotangent by ``rule(mask) -> weights`` (mask: the window's maxima, weights in the same shape)."""
    def forward(x, pool_param):
        ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
        n, c, h, w = x.shape
        out = np.zeros((n, c, 1 + (h - ph) // s, 1 + (w - pw) // s), dtype=x.dtype)
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                out[:, :, i, j] = x[:, :, i * s:i * s + ph, j * s:j * s + pw].max(axis=(2, 3))
        return out, (x, pool_param)

    def backward(dout, cache):
        x, pool_param = cache
        ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
        dx = np.zeros_like(x)
        for n in range(x.shape[0]):
            for c in range(x.shape[1]):
                for i in range(dout.shape[2]):
                    for j in range(dout.shape[3]):
                        window = x[n, c, i * s:i * s + ph, j * s:j * s + pw]
                        weights = rule(window == window.max())
                        dx[n, c, i * s:i * s + ph, j * s:j * s + pw] += weights * dout[n, c, i, j]
        return dx

    return types.SimpleNamespace(max_pool_forward_naive=forward, max_pool_backward_naive=backward)


def _first(mask):
    w = np.zeros(mask.shape)
    w.flat[np.argmax(mask)] = 1.0
    return w


def _last(mask):
    w = np.zeros(mask.shape)
    w.flat[mask.size - 1 - np.argmax(mask.ravel()[::-1])] = 1.0
    return w


def _even(mask):
    return mask / mask.sum()


def _uneven(mask):                      # 3/4 to the first tied maximum, the rest split among the others
    if mask.sum() == 1:
        return mask.astype(float)
    return 0.75 * _first(mask) + 0.25 * (mask & ~_first(mask).astype(bool)) / (mask.sum() - 1)


@pytest.mark.parametrize("rule", [_first, _last, _even, _uneven], ids=lambda r: r.__name__.strip("_"))
def test_every_convex_combination_of_tied_maxima_passes_on_every_seed(rule):
    for seed in SEEDS:
        report = check_op("maxpool2d", layers=_module(rule), extended=True, seed=seed, shrink=False)
        assert report.verdict == "pass", f"seed {seed}: {report.summary()}"
        if rule is not _first:
            assert report.notes.get("tie", 0) > 0, f"seed {seed}: no tie met: {report.summary()}"


def test_the_full_gradient_to_every_tied_maximum_fails_on_every_seed():
    for seed in SEEDS:
        report = check_op("maxpool2d", layers=_module(lambda mask: mask.astype(float)), extended=True,
                          seed=seed, shrink=False)
        assert report.verdict == "fail", f"seed {seed}: {report.summary()}"
