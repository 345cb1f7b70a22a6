"""bpcheck: prove a backpropagation implementation right, or find the smallest network on which it is wrong."""
__version__ = "0.1.0"
__all__ = ["assert_backprop", "check_op", "assert_op"]


def __getattr__(name):  # lazy: `import bpcheck` stays cheap (no Hypothesis, torch or jax)
    if name == "assert_backprop":
        from bpcheck.diagnose.search import assert_backprop
        return assert_backprop
    if name in ("check_op", "assert_op"):
        from bpcheck.opcheck import check
        return getattr(check, name)
    raise AttributeError(f"module 'bpcheck' has no attribute {name!r}")
