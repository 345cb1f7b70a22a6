"""Layer norm as a torch.autograd.Function with a hand-written backward (what a kernel author writes
before porting it to Triton or CUDA), checked in float32 and float64:

    bpcheck op layernorm --torch examples/torch_layernorm.py:layer_norm
"""
import torch


class LayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gamma, beta, eps):
        mu = x.mean(dim=-1, keepdim=True)
        var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
        rstd = torch.rsqrt(var + eps)
        xhat = (x - mu) * rstd
        ctx.save_for_backward(xhat, gamma, rstd)
        return xhat * gamma + beta

    @staticmethod
    def backward(ctx, dout):
        xhat, gamma, rstd = ctx.saved_tensors
        dxhat = dout * gamma
        dx = rstd * (dxhat - dxhat.mean(-1, keepdim=True) - xhat * (dxhat * xhat).mean(-1, keepdim=True))
        return dx, (dout * xhat).sum(0), dout.sum(0), None


def layer_norm(x, gamma, beta, eps):
    """bpcheck calls fn(*inputs, **hyper): x (N, D), gamma (D,), beta (D,); eps a float."""
    return LayerNorm.apply(x, gamma, beta, eps)
