"""The decoder: Qwen2 and Llama architectures in one readable file.

Features (numerics checked against transformers' modeling_qwen2.py / modeling_llama.py):
- token embedding, tied or untied with the output head;
- pre-norm blocks: RMSNorm computed in float32 and cast back, as the reference does;
- grouped-query attention (num_kv_heads divides num_heads), q/k/v bias for Qwen2 (optional for Llama);
- rotary position embeddings, half-split ("rotate_half") convention, with `llama3` frequency scaling;
- SwiGLU MLP: down(silu(gate(x)) * up(x)).

Two attention paths share the weights:
- "reference": explicit softmax(q k^T / sqrt(d) + causal mask) v in float32 — the Zero profile and the
  slow path every fast path is tested against;
- "sdpa": torch's scaled_dot_product_attention over a KV cache — the R1 profile; when the cache
  batches rows of different lengths it supplies a mask and `ragged_attention` applies it.

Linear layers are plain `nn.Linear` (q/k/v fused into `wqkv`, gate/up into `w_gate_up`, which halves
the kernel launches in decode) so an int8 quantiser can swap them module by module. The forward pass
takes explicit positions and an optional cache object: the generation loop, the cache and the
scheduler live outside this file. Attention reads keys/values back from the cache it was given, widened
to the activations' dtype when the cache stores a narrower one (kv_cache.py).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from model_core.config import ModelConfig

if TYPE_CHECKING:
    from model_core.kv_cache import KVCache

ATTENTION_PATHS = ("reference", "sdpa")


def rope_inv_freq(config: ModelConfig) -> torch.Tensor:
    """Inverse frequencies of the rotary embedding (head_dim / 2 values, float32)."""
    dim = config.head_dim
    steps = torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").float()
    inv_freq = 1.0 / (config.rope_theta ** (steps / dim))
    scaling = config.rope_scaling
    if not scaling:
        return inv_freq
    # llama3: long wavelengths are slowed down by `factor`, short ones kept, the band between blended.
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(is_medium, smoothed, scaled)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, *, dtype: torch.dtype, device: torch.device | str) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # the same formula as below, in one fused kernel (8 ops fewer)
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + causal mask) v, spelled out; q [B,H,T,D], k/v [B,Hkv,S,D]."""
    groups = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(groups, dim=1)  # [B,H,S,D]: query head h reads kv head h // groups
    v = v.repeat_interleave(groups, dim=1)
    t, s = q.shape[2], k.shape[2]
    scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(q.shape[-1])  # [B,H,T,S]
    # query i sits at absolute position past + i and may see keys 0..past + i
    causal = torch.arange(s, device=q.device)[None, :] > (past + torch.arange(t, device=q.device))[:, None]
    scores = scores.masked_fill(causal, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.matmul(probs, v)


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: int) -> torch.Tensor:
    """The fused kernel; q [B,H,T,D], k/v [B,Hkv,S,D] (S = past + T)."""
    b, h, t, d = q.shape
    hkv = k.shape[1]
    if t == 1:
        # Decode: one query per head sees every cached key, so no mask is needed, and grouping the
        # query heads of one kv head as rows of a single "head" avoids materialising repeated K/V.
        out = F.scaled_dot_product_attention(q.reshape(b, hkv, h // hkv, d), k, v)
        return out.reshape(b, h, 1, d)
    if past == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=hkv != h)
    s = k.shape[2]
    allowed = torch.arange(s, device=q.device)[None, :] <= (past + torch.arange(t, device=q.device))[:, None]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=hkv != h)


def ragged_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fused attention for a batch of rows of different lengths: q [B,H,T,D], k/v [B,Hkv,S,D], `mask`
    [B,1,T,S] boolean (True: the key is visible), supplied by the cache that padded the rows.

    Not batch-invariant: the fused kernel's reductions run over the padded length S, so a row's output
    depends, in its last bits, on the longest row beside it. Decode steps use `rowwise_decode_attention`."""
    b, h, t, d = q.shape
    hkv = k.shape[1]
    if t == 1:  # decode: the query heads of one kv head as rows of a single "head", as in sdpa_attention
        out = F.scaled_dot_product_attention(q.reshape(b, hkv, h // hkv, d), k, v, attn_mask=mask)
        return out.reshape(b, h, 1, d)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=hkv != h)


def rowwise_decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spans: list[int]) -> torch.Tensor:
    """One decode step over rows of different lengths, batch-invariant: q [B,H,1,D], k/v [B,Hkv,S,D]
    (padded, possibly stored in a narrower dtype than q), row i attending to its first `spans[i]` keys.

    Each row makes exactly the call a row decoding alone makes (`sdpa_attention`, t == 1) on exactly
    its own keys, so its output is bit for bit the output it has alone, whatever rows share the step.
    One fused call over the padded batch (`ragged_attention`) is not: its reductions run over the
    longest row's length, and the int8 kernel's bfloat16 activations amplify those last-bit differences
    until a greedy token flips (issue 4 check 1). The cost is one small kernel call per row and layer
    (benchmarks/RESULTS.md, session 9)."""
    outs = []
    for i, span in enumerate(spans):
        ki, vi = k[i:i + 1, :, :span], v[i:i + 1, :, :span]
        if ki.dtype != q.dtype:  # a cache stored in a narrower dtype: attend to its rounded K/V
            ki, vi = ki.to(q.dtype), vi.to(q.dtype)
        outs.append(sdpa_attention(q[i:i + 1], ki, vi, span - 1))
    return torch.cat(outs)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, *, dtype: torch.dtype, device: torch.device | str) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, config.head_dim
        q_out, kv_out = config.num_heads * config.head_dim, config.num_kv_heads * config.head_dim
        self.wqkv = nn.Linear(config.hidden_size, q_out + 2 * kv_out, bias=config.attention_bias,
                              dtype=dtype, device=device)
        self.wo = nn.Linear(q_out, config.hidden_size, bias=False, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layer: int,
                cache: KVCache | None, attention: str) -> torch.Tensor:
        b, t, _ = x.shape
        qkv = self.wqkv(x)
        q_out, kv_out = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        qk, v = qkv.split((q_out + kv_out, kv_out), dim=-1)
        # rotate queries and keys together: one pass of the rotary ops instead of two
        qk = qk.view(b, t, self.num_heads + self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B,H+Hkv,T,D]
        qk = qk * cos + rotate_half(qk) * sin
        q, k = qk.split((self.num_heads, self.num_kv_heads), dim=1)  # [B,H,T,D], [B,Hkv,T,D]
        v = v.view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        past, mask = 0, None
        if cache is not None:
            past = cache.length
            k, v = cache.update(layer, k, v)  # now [B,Hkv,past+T,D]
            spans = cache.row_spans  # a decode step over rows of different lengths (block_manager.BatchView)
            if spans is not None and t == 1 and attention != "reference":
                return self.wo(rowwise_decode_attention(q, k, v, spans).transpose(1, 2).reshape(b, t, q_out))
            if k.dtype != q.dtype:  # a cache stored in a narrower dtype: attend to its rounded K/V
                k, v = k.to(q.dtype), v.to(q.dtype)
            mask = cache.attention_mask  # rows of different lengths in one batch (block_manager.BatchView)
        if mask is not None:
            out = ragged_attention(q, k, v, mask)
        elif attention == "reference":
            out = reference_attention(q, k, v, past)
        else:
            out = sdpa_attention(q, k, v, past)
        return self.wo(out.transpose(1, 2).reshape(b, t, q_out))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig, *, dtype: torch.dtype, device: torch.device | str) -> None:
        super().__init__()
        self.intermediate = config.intermediate_size
        self.w_gate_up = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False,
                                   dtype=dtype, device=device)
        self.w_down = nn.Linear(config.intermediate_size, config.hidden_size, bias=False, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w_gate_up(x).split(self.intermediate, dim=-1)
        return self.w_down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: ModelConfig, *, dtype: torch.dtype, device: torch.device | str) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype, device=device)
        self.attn = Attention(config, dtype=dtype, device=device)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype, device=device)
        self.mlp = MLP(config, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layer: int,
                cache: KVCache | None, attention: str) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, layer, cache, attention)
        return x + self.mlp(self.mlp_norm(x))


class Transformer(nn.Module):
    """Embedding, `num_layers` blocks, final norm and output head."""

    def __init__(self, config: ModelConfig, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size, dtype=dtype, device=device)
        self.layers = nn.ModuleList(Block(config, dtype=dtype, device=device) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype, device=device)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False, dtype=dtype, device=device)
        self.tie_weights()
        self._rope_table: tuple[torch.Tensor, torch.Tensor] | None = None

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.embed.weight

    def part_rows(self, part: str) -> tuple[int, int]:
        """Rows of a fused weight that a checkpoint tensor fills (see checkpoint.HF_NAME_TABLE)."""
        c = self.config
        q, kv, inter = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size
        return {"q": (0, q), "k": (q, q + kv), "v": (q + kv, q + 2 * kv), "gate": (0, inter), "up": (inter, 2 * inter)}[part]

    def _rope(self, positions: torch.Tensor, dtype: torch.dtype, max_position: int | None,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin [B,1,T,D] for the given absolute positions, from a table grown on demand."""
        # the caller usually knows the largest position; reading it from the tensor syncs a GPU
        needed = (int(positions.max()) if max_position is None else max_position) + 1
        table = self._rope_table
        if table is None or table[0].shape[0] < needed or table[0].device != positions.device:
            size = max(needed, 2 * table[0].shape[0] if table is not None else 256)
            pos = torch.arange(size, device=positions.device).float()
            freqs = pos[:, None] * rope_inv_freq(self.config).to(positions.device)[None, :]  # [S, D/2], float32
            emb = torch.cat((freqs, freqs), dim=-1)
            table = self._rope_table = (emb.cos(), emb.sin())
        cos, sin = table[0][positions], table[1][positions]  # [B,T,D]
        return cos.to(dtype).unsqueeze(1), sin.to(dtype).unsqueeze(1)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, cache: KVCache | None = None,
                attention: str = "sdpa", last_only: bool = True, max_position: int | None = None) -> torch.Tensor:
        """Logits [B, 1 or T, vocab] for `input_ids` [B,T] at absolute `positions` [B,T].

        With a cache, keys/values of these tokens are appended to it and attention covers everything
        cached before them; without one, the tokens attend only to each other (full recompute).
        """
        x = self.embed(input_ids)
        cos, sin = self._rope(positions, x.dtype, max_position)
        for i, block in enumerate(self.layers):
            x = block(x, cos, sin, i, cache, attention)
        if cache is not None:
            cache.advance(input_ids.shape[1])
        if last_only:
            x = x[:, -1:, :]
        return self.lm_head(self.norm(x))
