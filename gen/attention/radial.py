"""Radial sparse attention masks for video transformers (O(n log n) attention).

Video tokens are frame-major: F latent frames × S tokens per frame, optionally followed
by text tokens that see and are seen by everything (HunyuanVideo). For query frame i and
key frame j at temporal distance d = |i − j|, with positions p, q inside a frame:

* Wan only: key frame 0 is visible to every query (attention sink);
* d ≤ 1: the whole frame pair is visible;
* otherwise, with g = bit_length(d) and L = 2^bit_length(S) / 2^g, the band
  |p − q| ≤ max(L·decay, B) is visible (B = block size, 128); if L < B the frame pair is
  kept only when d is a multiple of B/L, otherwise dropped whole.

Two granularities:

* `token`: exactly that mask, for any token count (FlexAttention masks the partial
  blocks inside the kernel);
* `block`: the reference implementation's coarsening to B×B blocks, frame pair by frame
  pair (a block is kept when more than 60 % of its non-empty columns are more than 1/3
  full), so its published quality carries over; blocks of a frame attending to itself are
  always kept (the reference drops them when frames are much smaller than a block, which
  leaves queries nothing to attend to). Text rows and columns stay exact.

Everything here is a pure function of the layout; `block_mask()` turns a layout into a
FlexAttention `BlockMask`, cached per (layout, granularity, device). The mask_mods are composed
from small pieces (`video_band`, `text_dense`, `keys_visible`) with FlexAttention's
`or_masks`/`and_masks`.

Known difference from the reference implementation (mit-han-lab/radial-attention): its
per-pair rule also applies the "keep only when d is a multiple of B/L" test at distance 1,
so for frames smaller than one 128-token block (S < 128, tiny layouts only) it drops whole
frame pairs at distance 1. gen keeps them: by its definition distance ≤ 1 is always visible.
Real layouts (S ≥ 128) are unaffected; the published kept-block densities are reproduced.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

BLOCK = 128
FLAVOURS = ("wan", "hunyuan")
GRANULARITIES = ("block", "token")


@dataclass(frozen=True)
class VideoLayout:
    """Where the tokens of one attention call come from."""

    frames: int  # latent frames F
    tokens_per_frame: int  # S = h·w after patching
    text_tokens: int = 0  # appended after the video tokens (HunyuanVideo)
    flavour: str = "wan"
    decay: float = 0.2
    block: int = BLOCK
    key_limit: int | None = None  # keys at or beyond this index are hidden from every query (text padding)

    def __post_init__(self):
        if self.flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}, got {self.flavour!r}")
        if self.frames < 1 or self.tokens_per_frame < 1 or self.text_tokens < 0:
            raise ValueError(f"invalid layout {self}")

    @property
    def video_tokens(self) -> int:
        return self.frames * self.tokens_per_frame

    @property
    def total_tokens(self) -> int:
        return self.video_tokens + self.text_tokens

    @property
    def visible_keys(self) -> int:
        return self.total_tokens if self.key_limit is None else min(self.key_limit, self.total_tokens)


# ----------------------------------------------------------------------------- the definition


def frame_band(distance: int, tokens_per_frame: int, decay: float, block: int = BLOCK) -> float:
    """Half-width of the visible band between two frames `distance` apart.

    `math.inf`: the whole frame pair; a negative number: the pair is dropped.
    """
    if distance <= 1:
        return math.inf
    group = distance.bit_length()
    length = 2 ** tokens_per_frame.bit_length() / 2**group
    if length < block and distance % int(block / length) != 0:
        return -1.0
    return max(length * decay, block)


def band_table(layout: VideoLayout) -> list[float]:
    """`frame_band` for every distance 0..F−1."""
    return [frame_band(d, layout.tokens_per_frame, layout.decay, layout.block) for d in range(layout.frames)]


def token_mask(layout: VideoLayout, device: torch.device | str = "cpu") -> torch.Tensor:
    """The exact (total × total) boolean mask, built directly from the definition (small layouts)."""
    n, s, v = layout.total_tokens, layout.tokens_per_frame, layout.video_tokens
    index = torch.arange(n, device=device)
    frame, pos = index // s, index % s
    distance = (frame[:, None] - frame[None, :]).abs()
    bands = torch.tensor(band_table(layout) + [math.inf], device=device, dtype=torch.float64)
    width = bands[distance.clamp(max=layout.frames)]
    keep = (pos[:, None] - pos[None, :]).abs().double() <= width
    if layout.flavour == "wan":
        keep |= (frame == 0)[None, :]
    video = (index < v)[:, None] & (index < v)[None, :]
    return torch.where(video, keep, torch.ones_like(keep)) & (index < layout.visible_keys)[None, :]


def _band_widths(layout: VideoLayout) -> list[int]:
    """`band_table` as integers: whole pair → S (|p − q| < S always), dropped → −1."""
    s = layout.tokens_per_frame
    return [s if math.isinf(w) else (int(math.floor(w)) if w >= 0 else -1) for w in band_table(layout)]


def video_band(layout: VideoLayout, device: torch.device | str = "cpu"):
    """The radial band between video tokens, with Wan's frame-0 sink (true outside the video part too:
    text is decided by `text_dense`)."""
    s = layout.tokens_per_frame
    widths = torch.tensor(_band_widths(layout), dtype=torch.int64, device=device)
    sink = layout.flavour == "wan"

    def video_band(b, h, q_idx, kv_idx):
        q_frame, k_frame = q_idx // s, kv_idx // s
        distance = (q_frame - k_frame).abs().clamp(max=layout.frames - 1)
        band = (q_idx % s - kv_idx % s).abs() <= widths[distance]
        return band | (k_frame == 0) if sink else band

    return video_band


def text_dense(video_tokens: int):
    """Text tokens (after the video tokens) see and are seen by everything."""

    def text_dense(b, h, q_idx, kv_idx):
        return (q_idx >= video_tokens) | (kv_idx >= video_tokens)

    return text_dense


def keys_visible(limit: int, device: torch.device | str = "cpu"):
    """Keys at or beyond `limit` (the prompt's padding) are hidden from every query."""
    bound = torch.tensor(limit, device=device)

    def keys_visible(b, h, q_idx, kv_idx):
        return kv_idx < bound

    return keys_visible


def _compose(layout: VideoLayout, video_part, device):
    from torch.nn.attention.flex_attention import and_masks, or_masks

    return and_masks(or_masks(video_part, text_dense(layout.video_tokens)), keys_visible(layout.visible_keys, device))


def radial_mask_mod(layout: VideoLayout, device: torch.device | str = "cpu"):
    """The token-exact mask as a FlexAttention `mask_mod(b, h, q_idx, kv_idx)`."""
    return _compose(layout, video_band(layout, device), device)


# ----------------------------------------------------------------------------- block coarsening


def _band_rows_per_column(rows: np.ndarray, cols: np.ndarray, width: float, size: int) -> np.ndarray:
    """For local columns `cols` and local row ranges `rows` (start, stop), count rows p with |p − q| ≤ width.

    Row/column indices are positions inside the frame (0..size−1); ranges outside it count nothing.
    """
    start, stop = np.clip(rows[0], 0, size), np.clip(rows[1], 0, size)
    if math.isinf(width):
        counts = np.maximum(stop - start, 0)
        return np.broadcast_to(counts[:, None], (len(counts), len(cols))).copy()
    w = math.floor(width)
    lo = np.maximum(start[:, None], cols[None, :] - w)
    hi = np.minimum(stop[:, None], cols[None, :] + w + 1)
    return np.maximum(hi - lo, 0)


def _coarsen_pair(layout: VideoLayout, width: float, row_offset: int, col_offset: int) -> np.ndarray:
    """The reference's per-pair coarsening: the S×S local mask placed at the block offsets, cut
    into ceil(S/B)² blocks; a block is kept when > 60 % of its non-empty columns are > 1/3 full."""
    s, b = layout.tokens_per_frame, layout.block
    nblocks = -(-s // b)
    if width < 0:
        return np.zeros((nblocks, nblocks), dtype=bool)
    block_rows = np.arange(nblocks) * b - row_offset  # local row where each block row starts
    rows = (block_rows, block_rows + b)
    cols = np.arange(nblocks * b) - col_offset  # local column of every padded column
    valid = (cols >= 0) & (cols < s)
    counts = _band_rows_per_column(rows, np.where(valid, cols, 0), width, s) * valid[None, :]
    counts = counts.reshape(nblocks, nblocks, b)  # (block row, block col, column in block)
    non_empty = (counts > 0).sum(-1)
    dense = (counts / b > 1 / 3).sum(-1)
    return dense / (non_empty + 1e-9) > 0.6


def block_table(layout: VideoLayout) -> np.ndarray:
    """Kept blocks of the video×video part, as the reference coarsens it (nb × nb, nb = ⌈V/B⌉)."""
    s, b, f = layout.tokens_per_frame, layout.block, layout.frames
    nb = -(-layout.video_tokens // b)
    table = np.zeros((nb, nb), dtype=bool)
    bands = band_table(layout)
    pair = functools.lru_cache(maxsize=None)(
        lambda width, ro, co: _coarsen_pair(layout, width, ro, co))
    for i in range(f):
        for j in range(f):
            width = math.inf if (j == 0 and layout.flavour == "wan") else bands[abs(i - j)]
            blocks = pair(width, (i * s) % b, (j * s) % b)
            r0, c0 = (i * s) // b, (j * s) // b
            r1, c1 = min(r0 + blocks.shape[0], nb), min(c0 + blocks.shape[1], nb)
            table[r0:r1, c0:c1] |= blocks[: r1 - r0, : c1 - c0]
    # Blocks holding a frame's attention to itself are always kept. Real layouts (S ≫ B) keep them
    # anyway; for frames much smaller than a block the reference's coarsening would drop them and
    # leave queries with nothing to attend to.
    for i in range(f):
        first, last = (i * s) // b, ((i + 1) * s - 1) // b
        table[first:last + 1, first:last + 1] = True
    return table


def block_mask_mod(layout: VideoLayout, device: torch.device | str = "cpu"):
    """The block-coarsened mask as a `mask_mod`; text rows and columns dense and exact."""
    table = torch.from_numpy(block_table(layout)).to(device)
    b = layout.block

    def kept_blocks(b_, h, q_idx, kv_idx):
        return table[(q_idx // b).clamp(max=table.shape[0] - 1), (kv_idx // b).clamp(max=table.shape[1] - 1)]

    return _compose(layout, kept_blocks, device)


def mask_mod_for(layout: VideoLayout, granularity: str, device: torch.device | str = "cpu"):
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    return radial_mask_mod(layout, device) if granularity == "token" else block_mask_mod(layout, device)


def dense_mask(layout: VideoLayout, granularity: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """The full boolean mask of a granularity, evaluated token by token (reference path, small layouts)."""
    index = torch.arange(layout.total_tokens, device=device)
    return evaluate_mask_mod(mask_mod_for(layout, granularity, device), index[:, None], index[None, :])


def evaluate_mask_mod(mask_mod, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """A mask_mod evaluated on broadcast index tensors outside the kernel (batch and head 0)."""
    zero = torch.zeros((), dtype=torch.int64, device=rows.device)
    return mask_mod(zero, zero, rows, cols)


# ----------------------------------------------------------------------------- FlexAttention


def _axis_pieces(layout: VideoLayout, nblocks: int) -> tuple[np.ndarray, ...]:
    """For every B-token block along one axis: the (frame, local start, local stop) pieces of the
    video frames it covers, padded with empty pieces; and whether it holds text or padding."""
    s, b, v = layout.tokens_per_frame, layout.block, layout.video_tokens
    k = min(layout.frames, b // s + 2)
    frame = np.zeros((nblocks, k), dtype=np.int64)
    start = np.zeros((nblocks, k), dtype=np.int64)
    stop = np.zeros((nblocks, k), dtype=np.int64)
    for block in range(nblocks):
        lo, hi = block * b, min((block + 1) * b, v)
        for piece in range(k):
            if lo >= hi:
                break
            f = lo // s
            frame[block, piece], start[block, piece] = f, lo - f * s
            stop[block, piece] = min(hi, (f + 1) * s) - f * s
            lo = (f + 1) * s
    ends = np.minimum((np.arange(nblocks) + 1) * b, layout.total_tokens)
    starts = np.arange(nblocks) * b
    mixed = ((starts < v) & (ends > v)) | (ends - starts < b)  # video/text border or a short last block
    text_only = np.arange(nblocks) * b >= v
    return frame, start, stop, mixed, text_only


def block_classes(layout: VideoLayout, granularity: str) -> tuple[np.ndarray, np.ndarray]:
    """(full, partial) boolean block matrices of a layout: full blocks need no mask inside the
    kernel, partial ones are masked token by token, the rest are skipped.

    Token granularity decides each block from the extreme |p − q| of its frame pieces (O(1) per
    block, no token-level mask is ever built); blocks that straddle the video/text border or the
    end of the sequence are always partial, which is exact because the kernel then applies the
    mask_mod.
    """
    nb = -(-layout.total_tokens // layout.block)
    frame, start, stop, mixed, text_only = _axis_pieces(layout, nb)
    if granularity == "block":
        nv = -(-layout.video_tokens // layout.block)
        video_full = np.zeros((nb, nb), dtype=bool)
        video_full[:nv, :nv] = block_table(layout)
        video_any = video_full.copy()
    else:
        widths = np.array([layout.tokens_per_frame if math.isinf(w) else (math.floor(w) if w >= 0 else -1)
                           for w in band_table(layout)], dtype=np.int64)
        fi, fj = frame[:, None, :, None], frame[None, :, None, :]
        a, b_ = start[:, None, :, None], stop[:, None, :, None] - 1  # row piece [a, b_]
        c, d = start[None, :, None, :], stop[None, :, None, :] - 1  # column piece [c, d]
        valid = (b_ >= a) & (d >= c)
        width = widths[np.abs(fi - fj)]
        sink = (fj == 0) if layout.flavour == "wan" else np.zeros_like(valid)
        far = np.maximum(np.abs(a - d), np.abs(b_ - c))
        near = np.where(c > b_, c - b_, np.where(a > d, a - d, 0))
        piece_full = sink | (far <= width)
        piece_empty = ~sink & (near > width)
        video_full = np.all(~valid | piece_full, axis=(2, 3)) & np.any(valid, axis=(2, 3))
        video_any = ~np.all(~valid | piece_empty, axis=(2, 3))
    text = text_only[:, None] | text_only[None, :]
    ends = np.minimum((np.arange(nb) + 1) * layout.block, layout.total_tokens)
    has_text = ends > layout.video_tokens
    edge = mixed[:, None] | mixed[None, :]
    edge_visible = video_any | has_text[:, None] | has_text[None, :]
    full = (text | video_full) & ~edge
    partial = (edge & edge_visible) | (video_any & ~video_full & ~text)
    # Hidden keys (text padding): key blocks wholly past the limit go, straddling ones become partial.
    starts = np.arange(nb) * layout.block
    hidden = starts >= layout.visible_keys
    straddle = (starts < layout.visible_keys) & (ends > layout.visible_keys)
    partial = (partial | (full & straddle[None, :])) & ~hidden[None, :]
    full = full & ~straddle[None, :] & ~hidden[None, :]
    return full, partial & ~full


@functools.lru_cache(maxsize=32)
def block_mask(layout: VideoLayout, granularity: str, device: str = "cpu"):
    """The FlexAttention `BlockMask` of a layout, built once per (layout, granularity, device)."""
    from torch.nn.attention.flex_attention import BlockMask

    full, partial = block_classes(layout, granularity)

    def indices(kept: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        counts = torch.from_numpy(kept.sum(-1).astype(np.int32))
        order = np.argsort(~kept, axis=-1, kind="stable").astype(np.int32)  # kept blocks first
        return counts[None, None].to(device), torch.from_numpy(order)[None, None].to(device)

    kv_num, kv_idx = indices(partial)
    full_num, full_idx = indices(full)
    n = layout.total_tokens
    return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=layout.block,
                                    mask_mod=mask_mod_for(layout, granularity, device), seq_lengths=(n, n))


def kept_block_density(layout: VideoLayout, granularity: str = "block") -> float:
    """Fraction of B×B blocks of the video×video part that the kernel computes."""
    if granularity == "block":
        return float(block_table(layout).mean())
    full, partial = block_classes(layout, granularity)
    nv = -(-layout.video_tokens // layout.block)
    return float((full | partial)[:nv, :nv].mean())


def attention_flops_fraction(layout: VideoLayout, granularity: str = "block") -> float:
    """Fraction of dense attention FLOPs the block-sparse kernel still does (video and text).

    Partial blocks of the token granularity cost as much as full ones: the kernel computes
    the whole block and masks inside it.
    """
    full, partial = block_classes(layout, granularity)
    dense = torch.from_numpy(full | partial).float()
    b, n = layout.block, layout.total_tokens
    rows = torch.full((dense.shape[0],), float(b))
    rows[-1] = n - b * (dense.shape[0] - 1)  # the last block row/column may be short
    return float(rows @ dense @ rows / (n * n))


@functools.lru_cache(maxsize=64)
def keeps_everything(layout: VideoLayout, granularity: str) -> bool:
    """True when the mask hides nothing, so radial attention is dense attention."""
    full, partial = block_classes(layout, granularity)
    if not (full | partial).all():
        return False
    mask_mod, b, n = mask_mod_for(layout, granularity), layout.block, layout.total_tokens
    for i, j in zip(*np.nonzero(partial)):  # only the partial blocks need a token-level look
        rows = torch.arange(i * b, min((i + 1) * b, n))[:, None]
        cols = torch.arange(j * b, min((j + 1) * b, n))[None, :]
        if not bool(evaluate_mask_mod(mask_mod, rows, cols).all()):
            return False
    return True


@functools.lru_cache(maxsize=1)
def compiled_flex_attention():
    """FlexAttention compiled once per process: the eager path materialises every score."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def radial_sparse_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, layout: VideoLayout,
                            granularity: str = "block", scale: float | None = None) -> torch.Tensor:
    """Block-sparse radial attention of (batch, heads, tokens, head_dim) tensors, any token count."""
    if query.shape[-2] != layout.total_tokens:
        raise ValueError(f"layout has {layout.total_tokens} tokens but the query has {query.shape[-2]}")
    if keeps_everything(dataclasses.replace(layout, key_limit=None), granularity):
        # e.g. ≤ 2 latent frames: the dense kernel with the text padding mask (if any) is the same mask
        padding = None
        if layout.visible_keys < layout.total_tokens:
            padding = (torch.arange(layout.total_tokens, device=query.device) < layout.visible_keys)[None, :]
        return torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=padding, scale=scale)
    mask = block_mask(layout, granularity, str(query.device))
    return compiled_flex_attention()(query, key, value, block_mask=mask, scale=scale)


def reference_radial_attention(query, key, value, layout: VideoLayout, granularity: str = "block",
                               scale: float | None = None) -> torch.Tensor:
    """SDPA with the full boolean mask: slow and memory-hungry, for tests only."""
    mask = dense_mask(layout, granularity, query.device)
    return torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale)


def mask_picture(layout: VideoLayout, granularity: str = "block", target_px: int = 768) -> np.ndarray:
    """An RGB picture of the block mask: white = full block, grey = masked inside, black = skipped;
    red lines mark frame boundaries, blue the start of the text tokens."""
    full, partial = block_classes(layout, granularity)
    nb = full.shape[0]
    scale = max(1, target_px // nb)
    picture = np.zeros((nb, nb, 3), dtype=np.uint8)
    picture[partial] = (150, 150, 150)
    picture[full] = (255, 255, 255)
    picture = picture.repeat(scale, 0).repeat(scale, 1)
    size = nb * scale
    for frame in range(1, layout.frames):
        line = min(size - 1, round(frame * layout.tokens_per_frame / layout.block * scale))
        picture[line, :] = picture[:, line] = (200, 40, 40)
    if layout.text_tokens:
        line = min(size - 1, round(layout.video_tokens / layout.block * scale))
        picture[line, :] = picture[:, line] = (40, 90, 220)
    return picture
