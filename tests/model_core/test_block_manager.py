"""The decode pool allocates only what its sequences can use: zeroed memory is resident memory, so a
doubling "for later" costs real RSS (a 528-token answer once held a 4-row x 1024-token pool)."""

from __future__ import annotations

import torch

from model_core.block_manager import ALIGN, GROW_STEP, DecodePool
from model_core.config import ModelConfig
from model_core.kv_cache import KVCache
from model_core.sequence import Sequence

CONFIG = ModelConfig(architecture="llama", vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                     num_heads=4, num_kv_heads=2, head_dim=8, rms_norm_eps=1e-6, rope_theta=10000.0,
                     max_position_embeddings=4096, tie_word_embeddings=True, attention_bias=False)


def joined(pool: DecodePool, prompt_len: int, budget: int) -> Sequence:
    seq = Sequence(prompt=list(range(prompt_len)), budget=budget, sampler=None, stop_ids=frozenset())
    staging = KVCache(CONFIG, prompt_len, dtype=torch.float32)
    staging.keys.normal_()
    staging.values.normal_()
    seq.kv_len = prompt_len
    pool.add(seq, staging)
    return seq


def test_one_sequence_gets_one_row_and_its_reservation():
    pool = DecodePool(CONFIG, max_rows=16, max_len=4096, dtype=torch.float32, device=torch.device("cpu"))
    seq = joined(pool, prompt_len=16, budget=512)
    assert pool.keys.shape[1] == 1
    assert pool.capacity == -(-(16 + 1 + 512) // ALIGN) * ALIGN  # 576, not 1024
    # decoding to the end of its budget never reallocates
    keys = pool.keys
    seq.kv_len = 16 + 512
    pool.view()
    assert pool.keys is keys


def test_capacity_growth_keeps_rows_and_rows_double_only_when_needed():
    pool = DecodePool(CONFIG, max_rows=16, max_len=4096, dtype=torch.float32, device=torch.device("cpu"))
    first = joined(pool, prompt_len=8, budget=8)
    stored = pool.keys[:, 0, :, :8].clone()
    first.kv_len = pool.capacity  # outlived its reservation (as if the budget were raised)
    pool.view()
    assert pool.keys.shape[1] == 1 and pool.capacity == ALIGN + GROW_STEP
    torch.testing.assert_close(pool.keys[:, 0, :, :8], stored)  # what the row held survived the copy
    joined(pool, prompt_len=8, budget=8)
    assert pool.keys.shape[1] == 2
    joined(pool, prompt_len=8, budget=8)
    assert pool.keys.shape[1] == 4  # a burst of admissions copies log2(n) times
    assert torch.isfinite(pool.keys).all() and torch.isfinite(pool.values).all()
