"""Radial attention masks against the definition, the reference coarsening, and the FlexAttention kernel."""

import math

import pytest
import torch

from gen.attention.radial import (VideoLayout, attention_flops_fraction, block_mask, block_table, dense_mask,
                                  kept_block_density, radial_sparse_attention, reference_radial_attention,
                                  token_mask)

LAYOUTS = [
    VideoLayout(frames=12, tokens_per_frame=300, flavour="wan", decay=0.2),
    VideoLayout(frames=9, tokens_per_frame=1000, flavour="hunyuan", decay=0.95, text_tokens=37),
    VideoLayout(frames=6, tokens_per_frame=40, flavour="wan", decay=0.2),
    VideoLayout(frames=5, tokens_per_frame=300, flavour="hunyuan", decay=0.95, text_tokens=300, key_limit=1620),
]
IDS = ["wan-300", "hunyuan-1000-text", "wan-40", "hunyuan-padded-text"]


def definition_mask(layout: VideoLayout) -> torch.Tensor:
    """The mask written out from the definition, frame pair by frame pair, with plain Python rules."""
    s, f, n = layout.tokens_per_frame, layout.frames, layout.total_tokens
    mask = torch.ones(n, n, dtype=torch.bool)
    positions = torch.arange(s)
    offset = (positions[:, None] - positions[None, :]).abs()
    for i in range(f):
        for j in range(f):
            d = abs(i - j)
            if layout.flavour == "wan" and j == 0 or d <= 1:
                pair = torch.ones(s, s, dtype=torch.bool)
            else:
                length = 2 ** s.bit_length() / 2 ** d.bit_length()
                if length < layout.block and d % int(layout.block / length) != 0:
                    pair = torch.zeros(s, s, dtype=torch.bool)
                else:
                    pair = offset <= max(length * layout.decay, layout.block)
            mask[i * s:(i + 1) * s, j * s:(j + 1) * s] = pair
    mask[:, layout.visible_keys:] = False  # padded text keys are hidden from everyone
    return mask


def reference_coarsening(layout: VideoLayout) -> torch.Tensor:
    """Block coarsening done literally: pad each pair's token mask at its block offset, then count."""
    s, b, f = layout.tokens_per_frame, layout.block, layout.frames
    full = definition_mask(VideoLayout(f, s, 0, layout.flavour, layout.decay, b))
    nb = -(-f * s // b)
    table = torch.zeros(nb, nb, dtype=torch.bool)
    per_pair = -(-s // b)
    for i in range(f):
        for j in range(f):
            ro, co = (i * s) % b, (j * s) % b
            padded = torch.zeros(ro + per_pair * b, co + per_pair * b, dtype=torch.bool)
            padded[ro:ro + s, co:co + s] = full[i * s:(i + 1) * s, j * s:(j + 1) * s]
            blocks = padded[:per_pair * b, :per_pair * b].reshape(per_pair, b, per_pair, b).float()
            column_density = blocks.sum(1) / b  # (block row, block col, column)
            non_empty = (column_density > 0).sum(-1)
            dense = (column_density > 1 / 3).sum(-1)
            kept = dense / (non_empty + 1e-9) > 0.6
            r0, c0 = (i * s) // b, (j * s) // b
            r1, c1 = min(r0 + per_pair, nb), min(c0 + per_pair, nb)
            table[r0:r1, c0:c1] |= kept[: r1 - r0, : c1 - c0]
    for i in range(f):  # gen keeps every block of a frame attending to itself
        first, last = (i * s) // b, ((i + 1) * s - 1) // b
        table[first:last + 1, first:last + 1] = True
    return table


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
def test_token_mask_matches_the_definition(layout):
    expected = definition_mask(layout)
    assert torch.equal(token_mask(layout), expected)
    assert torch.equal(dense_mask(layout, "token"), expected)  # the FlexAttention mask_mod
    assert layout.total_tokens % 128 != 0


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
def test_block_coarsening_matches_a_literal_reimplementation(layout):
    assert torch.equal(torch.from_numpy(block_table(layout)), reference_coarsening(layout))


@pytest.mark.parametrize("flavour,frames,tokens,decay,published", [
    ("wan", 18, 48 * 80, 0.2, 28.7), ("hunyuan", 30, 48 * 80, 0.95, 27.5), ("wan", 21, 32 * 48, 0.2, 36.9),
    ("wan", 42, 32 * 48, 0.2, 26.1), ("wan", 84, 32 * 48, 0.2, 17.2),
])
def test_block_density_matches_the_reference_numbers(flavour, frames, tokens, decay, published):
    density = kept_block_density(VideoLayout(frames, tokens, flavour=flavour, decay=decay), "block")
    assert round(100 * density, 1) == published


def test_wan_sink_and_hunyuan_text_rows():
    wan = token_mask(VideoLayout(8, 300, flavour="wan"))
    assert wan[7 * 300:, :300].all()  # every query sees frame 0
    hunyuan = VideoLayout(8, 300, flavour="hunyuan", text_tokens=5)
    mask = token_mask(hunyuan)
    assert not mask[7 * 300:8 * 300, :300].all()  # no sink
    assert mask[-5:].all() and mask[:, -5:].all()  # text sees and is seen by everything


def test_block_masks_are_cached_per_layout_granularity_and_device():
    layout = LAYOUTS[0]
    assert block_mask(layout, "block", "cpu") is block_mask(layout, "block", "cpu")
    assert block_mask(layout, "token", "cpu") is not block_mask(layout, "block", "cpu")
    assert 0 < attention_flops_fraction(layout, "token") < 1


KERNEL_CASES = [
    (VideoLayout(frames=6, tokens_per_frame=300, flavour="wan", decay=0.2), "token"),
    (VideoLayout(frames=6, tokens_per_frame=300, flavour="wan", decay=0.2), "block"),
    (VideoLayout(frames=6, tokens_per_frame=290, flavour="hunyuan", decay=0.2, text_tokens=60), "token"),
    (VideoLayout(frames=6, tokens_per_frame=290, flavour="hunyuan", decay=0.2, text_tokens=60), "block"),
    (VideoLayout(frames=6, tokens_per_frame=290, flavour="hunyuan", decay=0.2, text_tokens=60, key_limit=1760),
     "token"),
]


@pytest.mark.parametrize("layout,granularity", KERNEL_CASES, ids=["wan-token", "wan-block", "hy-token", "hy-block", "hy-padded"])
def test_flex_attention_matches_sdpa_with_the_boolean_mask(layout, granularity):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, layout.total_tokens, 32, generator=g) for _ in range(3))
    sparse = radial_sparse_attention(q, k, v, layout, granularity, scale=0.2)
    reference = reference_radial_attention(q, k, v, layout, granularity, scale=0.2)
    assert torch.allclose(sparse, reference, atol=1e-5)
    dense = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.2)
    assert not torch.allclose(sparse, dense, atol=1e-3)  # the mask really removes something


def test_two_frames_keep_everything_and_equal_dense_attention():
    layout = VideoLayout(frames=2, tokens_per_frame=900, flavour="wan")
    assert token_mask(layout).all() and math.isclose(kept_block_density(layout, "token"), 1.0)
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, layout.total_tokens, 32, generator=g) for _ in range(3))
    assert torch.allclose(radial_sparse_attention(q, k, v, layout, "token"),
                          torch.nn.functional.scaled_dot_product_attention(q, k, v), atol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
@pytest.mark.parametrize("granularity", ["token", "block"])
def test_block_classification_agrees_with_the_token_mask(layout, granularity):
    """Full blocks are all-visible, skipped blocks all-hidden; partial ones are masked in the kernel."""
    from gen.attention.radial import block_classes

    full, partial = block_classes(layout, granularity)
    mask = dense_mask(layout, granularity)
    b, n = layout.block, layout.total_tokens
    for i in range(full.shape[0]):
        for j in range(full.shape[1]):
            tile = mask[i * b:(i + 1) * b, j * b:(j + 1) * b]
            if full[i, j]:
                assert tile.all() and tile.shape == (b, b), (i, j)
            elif not partial[i, j]:
                assert not tile.any(), (i, j)
            else:
                assert tile.any(), (i, j)
    if granularity == "token" and not layout.text_tokens:  # exact away from edges: no needless partial block
        inner = partial[:-1, :-1] if n % b else partial
        tiles = mask[: inner.shape[0] * b, : inner.shape[1] * b].reshape(inner.shape[0], b, inner.shape[1], b)
        assert not (inner & tiles.all(3).all(1).numpy()).any()
