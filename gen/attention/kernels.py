"""The one place that chooses and calls the dense attention kernel.

Every gen processor computes attention through `dense_attention`, so the softmax
scale is always folded into the fused kernel's `scale` argument (never a second
pass over the scores) and the backend choice lives here only.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings

import torch
import torch.nn.functional as F

from gen.errors import BackendUnavailable

BACKENDS = ("sdpa", "xformers")


def xformers_installed() -> bool:
    return importlib.util.find_spec("xformers") is not None


def resolve_backend(name: str, device: torch.device | str) -> str:
    """Check that backend `name` can run on `device`; return its canonical name."""
    name = name.lower()
    device_type = torch.device(device).type
    if name not in BACKENDS:
        raise BackendUnavailable(
            f"unknown attention backend {name!r}; choose one of: {', '.join(BACKENDS)}"
        )
    if name == "xformers":
        if device_type != "cuda":
            raise BackendUnavailable(
                f"attention backend 'xformers' needs a CUDA device, but this run is on {device_type}; "
                "use --attention-backend sdpa"
            )
        if not xformers_installed():
            raise BackendUnavailable(
                "attention backend 'xformers' is not installed; install it with "
                "`pip install 'gen[cuda]'` or use --attention-backend sdpa"
            )
        problem = _xformers_problem(str(torch.device(device)))
        if problem:
            raise BackendUnavailable(
                f"xformers is installed but cannot run here ({problem}); it must be built for this "
                "torch and CUDA (see `python -m xformers.info`); or use --attention-backend sdpa"
            )
    return name


@functools.lru_cache(maxsize=None)
def _xformers_problem(device: str) -> str | None:
    """None if a tiny xformers call works on `device`, else the first line of its error.

    An installed xformers built for another torch/CUDA imports fine and fails only at
    the first call, so availability is decided by calling it.
    """
    try:
        import xformers.ops as xops

        probe = torch.zeros(1, 8, 1, 64, device=device, dtype=torch.float16)
        xops.memory_efficient_attention(probe, probe, probe)
    except Exception as exc:  # any failure means: not usable here
        lines = str(exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__
    return None


_warned_xformers_mask = False


def dense_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    scale: float | None = None,
    attn_mask: torch.Tensor | None = None,
    backend: str = "sdpa",
) -> torch.Tensor:
    """softmax(scale · q kᵀ + mask) v for tensors laid out (batch, heads, tokens, head_dim).

    `scale=None` means the kernel's own default 1/√head_dim, bit for bit what the
    stock diffusers processors get.
    """
    if backend == "xformers":
        if attn_mask is None:
            return _xformers_attention(query, key, value, scale)
        global _warned_xformers_mask
        if not _warned_xformers_mask:
            warnings.warn("xformers path does not take attention masks; masked calls use SDPA", stacklevel=2)
            _warned_xformers_mask = True
    return F.scaled_dot_product_attention(
        query, key, value, attn_mask=attn_mask, dropout_p=0.0, is_causal=False, scale=scale
    )


def _xformers_attention(query, key, value, scale):
    import xformers.ops as xops

    # xformers takes (batch, tokens, heads, head_dim).
    out = xops.memory_efficient_attention(
        query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), scale=scale
    )
    return out.transpose(1, 2)
