"""The R1 profile's decode layout (model_core.fast) against the untouched model: same numbers, same
tokens, no extra memory, the tied head still one tensor shared with the embedding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model_core import Engine, SamplingParams
from model_core.checkpoint import load_checkpoint
from model_core.fast import (
    PackedLinear,
    TransposedEmbedding,
    TransposedLinear,
    packed_available,
    use_decode_layout,
)
from model_core.kv_cache import KVCache

NAMES = ["qwen2-r1", "qwen2-tied-sharded", "llama-untied"]


def _param_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _buffer_bytes(model: nn.Module) -> int:
    return sum(b.to_dense().numel() * b.element_size() if b.is_mkldnn else b.numel() * b.element_size()
               for b in model.buffers())


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "transposed"])
@pytest.mark.parametrize("name", NAMES)
def test_layout_swap_keeps_logits_and_memory(name, packed, checkpoints):
    if packed and not packed_available():
        pytest.skip("this torch build has no oneDNN")
    plain = load_checkpoint(checkpoints[name], dtype=torch.float32, device="cpu", progress=False).model
    fast = load_checkpoint(checkpoints[name], dtype=torch.float32, device="cpu", progress=False).model
    before = _param_bytes(fast)
    head_bytes = fast.lm_head.weight.numel() * 4
    use_decode_layout(fast, packed=packed)
    assert not any(type(m) is nn.Linear for m in fast.modules())
    assert isinstance(fast.lm_head, PackedLinear if packed else TransposedLinear)
    after = _param_bytes(fast) + _buffer_bytes(fast)
    tied = fast.config.tie_word_embeddings
    if packed and tied:  # the packed head is its own copy; the embedding keeps the dense matrix
        assert after == before + head_bytes
    else:  # the new layout replaced the original, nothing doubled
        assert after == before
    if tied and not packed:
        assert isinstance(fast.embed, TransposedEmbedding)
        assert fast.embed.weight.data_ptr() == fast.lm_head.weight_t.data_ptr()
    ids = torch.randint(0, fast.config.vocab_size, (1, 37), generator=torch.Generator().manual_seed(1))
    pos = torch.arange(37)[None]
    with torch.inference_mode():
        a = plain(ids, pos, last_only=False)
        b = fast(ids, pos, last_only=False)
        assert (a - b).abs().max().item() <= 1e-4  # the parity bound of issue 3
        # one decode step through the cache, the path the layout is for
        caches = [KVCache(m.config, 64) for m in (plain, fast)]
        plain(ids, pos, caches[0]), fast(ids, pos, caches[1])
        step = torch.tensor([[7]]), torch.tensor([[37]])
        assert (plain(*step, caches[0]) - fast(*step, caches[1])).abs().max().item() <= 1e-4  # the parity bound of issue 3


def test_r1_engine_uses_the_layout_and_zero_keeps_plain_linears(checkpoints):
    path = checkpoints["qwen2-tied-sharded"]
    r1 = Engine.load(path, profile="r1", progress=False)
    zero = Engine.load(path, profile="zero", progress=False)
    fast_types = (PackedLinear, TransposedLinear)
    assert any(isinstance(m, fast_types) for m in r1.model.modules())
    assert not any(isinstance(m, fast_types) for m in zero.model.modules())
    params = SamplingParams(max_tokens=24, greedy=True)
    prompt = list(range(200, 230))
    assert r1.generate([prompt], params)[0].token_ids == zero.generate([prompt], params)[0].token_ids


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_weights_are_packed_only_where_onednn_can(dtype, checkpoints):
    """An AVX2-only CPU cannot reorder bfloat16/float16 weights for oneDNN (it raises); the layout
    falls back to transposed weights there, and a bfloat16 R1 engine still loads and generates."""
    supported = {torch.bfloat16: torch.ops.mkldnn._is_mkldnn_bf16_supported,
                 torch.float16: torch.ops.mkldnn._is_mkldnn_fp16_supported}[dtype]()
    assert packed_available("cpu", dtype) == (torch.backends.mkldnn.is_available() and supported)
    assert packed_available("cpu", torch.float32) == torch.backends.mkldnn.is_available()
    if dtype == torch.bfloat16:
        engine = Engine.load(checkpoints["llama-untied"], profile="r1", dtype="bfloat16", progress=False)
        expected = PackedLinear if packed_available("cpu", dtype) else TransposedLinear
        assert isinstance(engine.model.lm_head, expected)
        assert 1 <= len(engine.generate([[5, 6, 7]], SamplingParams(max_tokens=4, greedy=True))[0].token_ids) <= 4
