"""The dense kernel choice and the scale it is given."""

import pytest
import torch
import torch.nn.functional as F

from gen.attention import dense_attention, resolve_backend
from gen.errors import BackendUnavailable


def _qkv(dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, 3, 17, 8, generator=g, dtype=dtype) for _ in range(3)]


def test_explicit_scale_matches_float64_reference():
    q, k, v = _qkv()
    scale = 0.123
    expected = torch.softmax(q @ k.transpose(-1, -2) * scale, -1) @ v
    assert torch.allclose(dense_attention(q, k, v, scale=scale), expected, atol=1e-12)


def test_default_scale_is_the_kernel_default():
    q, k, v = _qkv(torch.float32)
    assert torch.equal(dense_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_boolean_mask_is_applied():
    q, k, v = _qkv()
    mask = torch.ones(17, 17, dtype=torch.bool).tril()
    expected = torch.softmax((q @ k.transpose(-1, -2) * 8**-0.5).masked_fill(~mask, float("-inf")), -1) @ v
    assert torch.allclose(dense_attention(q, k, v, attn_mask=mask), expected, atol=1e-12)


def test_backend_resolution_errors_are_specific():
    assert resolve_backend("SDPA", "cpu") == "sdpa"
    with pytest.raises(BackendUnavailable, match="needs a CUDA device"):
        resolve_backend("xformers", "cpu")
    with pytest.raises(BackendUnavailable, match="choose one of: sdpa, xformers"):
        resolve_backend("flash3", "cpu")
