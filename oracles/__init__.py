"""Independent oracles: PyTorch autograd, JAX grad and a high-precision arbiter.

Each module exposes ``backprop(spec, params, x, y) -> Result dict`` (README, "Conventions")
built on its framework's own functions. None of them imports ``reference``.
"""
