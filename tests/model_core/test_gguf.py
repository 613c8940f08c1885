"""The bundled SmolLM2 GGUF (llama architecture, Q4_1 + Q8_0 tensors): model_core against transformers'
own GGUF loader, the rebuilt tokenizer against transformers' GGUF tokenizer, and the converted
safetensors directory against the GGUF it came from."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import quantize

from model_core import CheckpointError, Engine, SamplingParams
from model_core.convert import convert_gguf
from model_core.gguf_loader import hf_name

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,",
           "List three healthy breakfast ideas:"]
TEXTS = ["Hello world", "  leading spaces and\ttabs\n\nnewlines", "Ünïcödé — ça va? 日本語のテキスト 🙂",
         "<|im_start|>user\nhi<|im_end|>\n", "numbers 1234567 and 3.14159, code: x+=1;", "can't won't I'll",
         "<think>reasoning</think> answer"]


@pytest.fixture(scope="module")
def hf_gguf(smollm2_gguf):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = {"gguf_file": smollm2_gguf.name}
    tok = AutoTokenizer.from_pretrained(smollm2_gguf.parent, **kw)
    model = AutoModelForCausalLM.from_pretrained(smollm2_gguf.parent, dtype=torch.float32, **kw).eval()
    return tok, model


@pytest.fixture(scope="module")
def engine(smollm2_gguf):
    return Engine.load(smollm2_gguf, profile="r1", progress=False)


@pytest.fixture(scope="module")
def converted(smollm2_gguf, tmp_path_factory):
    return convert_gguf(smollm2_gguf, tmp_path_factory.mktemp("conv") / "smollm2", progress=False)


def test_tokenizer_matches_transformers_gguf_tokenizer(engine, hf_gguf):
    tok, _ = hf_gguf
    for text in TEXTS:
        assert engine.tokenizer.encode(text) == tok(text).input_ids, text
        ids = tok(text).input_ids
        assert engine.tokenizer.decode(ids) == tok.decode(ids, skip_special_tokens=True), text
    assert engine.tokenizer.chat_template and "<|im_start|>" in engine.tokenizer.chat_template


def test_greedy_continuations_match_transformers(engine, hf_gguf):
    tok, model = hf_gguf
    params = SamplingParams(max_tokens=64, greedy=True)
    for text in PROMPTS:
        ids = tok(text).input_ids
        with torch.inference_mode():
            out = model.generate(torch.tensor([ids]), max_new_tokens=64, do_sample=False,
                                 attention_mask=torch.ones(1, len(ids), dtype=torch.long))
        [result] = engine.generate([ids], params)
        assert result.token_ids == out[0, len(ids):].tolist(), text


def test_converted_directory_gives_the_same_tokens(engine, converted):
    files = sorted(p.name for p in converted.iterdir())
    assert files == ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json"]
    assert "chat_template" in json.loads((converted / "tokenizer_config.json").read_text())
    from_dir = Engine.load(converted, profile="r1", progress=False)
    params = SamplingParams(max_tokens=64, greedy=True)
    for text in PROMPTS[:2]:
        ids = engine.tokenizer.encode(text)
        assert from_dir.tokenizer.encode(text) == ids
        assert from_dir.generate([ids], params)[0].token_ids == engine.generate([ids], params)[0].token_ids
    messages = [{"role": "user", "content": "What is 2+2?"}]
    assert from_dir.render_chat(messages) == engine.render_chat(messages)


def test_converted_directory_loads_in_transformers(converted, engine):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(converted)
    ids = tok("The capital of France is").input_ids
    assert ids == engine.tokenizer.encode("The capital of France is")
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False,
                             attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    assert engine.generate([ids], SamplingParams(max_tokens=16, greedy=True))[0].token_ids == out[0, len(ids):].tolist()


TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"]


def _k_quant_bytes(qtype: GGMLQuantizationType, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Random Q4_K/Q6_K blocks (the gguf package has no quantiser for them) with sane fp16 scales."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    data = rng.integers(0, 256, size=(rows * cols // block, size), dtype=np.uint8)
    scale = np.full((data.shape[0], 1), 0.0002, dtype=np.float16).view(np.uint8)
    if qtype == GGMLQuantizationType.Q4_K:  # d, dmin lead the block
        data[:, 0:2], data[:, 2:4] = scale, scale
    else:  # Q6_K: d closes the block
        data[:, -2:] = scale
    return data.reshape(rows, -1)


@pytest.fixture(scope="module")
def tiny_gguf(smollm2_gguf, tmp_path_factory):
    """A 2-layer llama GGUF written with llama.cpp's writer, one tensor type after another, q/k permuted
    the way llama.cpp's converter does, with SmolLM2's tokenizer metadata."""
    from model_core.gguf_loader import read_metadata

    meta = read_metadata(gguf.GGUFReader(str(smollm2_gguf)))
    path = tmp_path_factory.mktemp("tiny") / "tiny-llama.gguf"
    hidden, inter, heads, kv, layers, vocab = 256, 512, 4, 2, 2, len(meta["tokenizer.ggml.tokens"])
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(layers)
    w.add_context_length(2048)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(inter)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(meta["tokenizer.ggml.pre"])
    w.add_token_list(meta["tokenizer.ggml.tokens"])
    w.add_token_types(meta["tokenizer.ggml.token_type"])
    w.add_token_merges(meta["tokenizer.ggml.merges"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template(meta["tokenizer.chat_template"])
    rng = np.random.default_rng(0)
    types = iter(TYPES * 10)

    def permute(m: np.ndarray, n: int) -> np.ndarray:  # llama.cpp convert_hf_to_gguf.py's permute
        return m.reshape(n, 2, m.shape[0] // n // 2, m.shape[1]).swapaxes(1, 2).reshape(m.shape)

    def add(name: str, shape: tuple[int, ...], qtype: str = "F32", n_perm: int = 0) -> None:
        t = GGMLQuantizationType[qtype]
        if t in (GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q6_K):
            w.add_tensor(name, _k_quant_bytes(t, *shape, rng), raw_dtype=t)
            return
        data = (rng.standard_normal(shape) * (0.3 if len(shape) == 2 else 0.1) + (len(shape) == 1)).astype(np.float32)
        if n_perm:
            data = permute(data, n_perm)
        if t == GGMLQuantizationType.F32:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, quantize(data, t), raw_dtype=t)

    add("token_embd.weight", (vocab, hidden), "Q8_0")
    add("output_norm.weight", (hidden,))
    add("output.weight", (vocab, hidden), "Q6_K")
    for i in range(layers):
        add(f"blk.{i}.attn_norm.weight", (hidden,))
        add(f"blk.{i}.ffn_norm.weight", (hidden,))
        add(f"blk.{i}.attn_q.weight", (hidden, hidden), next(types), n_perm=heads)
        add(f"blk.{i}.attn_k.weight", (kv * 64, hidden), next(types), n_perm=kv)
        for name, shape in (("attn_v", (kv * 64, hidden)), ("attn_output", (hidden, hidden)),
                            ("ffn_gate", (inter, hidden)), ("ffn_up", (inter, hidden)), ("ffn_down", (hidden, inter))):
            add(f"blk.{i}.{name}.weight", shape, next(types))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_every_tensor_type_and_the_qk_permutation_match_transformers(tiny_gguf):
    """model_core and transformers read the same hand-written GGUF to the same weights and logits."""
    from transformers import AutoModelForCausalLM

    reader = gguf.GGUFReader(str(tiny_gguf))
    assert {t.tensor_type.name for t in reader.tensors} >= set(TYPES)
    ref = AutoModelForCausalLM.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name, dtype=torch.float32).eval()
    engine = Engine.load(tiny_gguf, profile="zero", progress=False)
    assert engine.config.tie_word_embeddings is False
    sd = ref.state_dict()
    qkv = engine.model.layers[1].attn.wqkv.weight
    assert torch.equal(qkv[:256], sd["model.layers.1.self_attn.q_proj.weight"])
    assert torch.equal(qkv[256:384], sd["model.layers.1.self_attn.k_proj.weight"])
    ids = torch.tensor([[1, 504, 3575, 282, 4649, 314, 9, 42, 77, 1000]])
    with torch.inference_mode():
        expected = ref(ids).logits[0, -1]
        got = engine.model(ids, torch.arange(ids.shape[1])[None], attention="reference")[0, -1]
    assert (got - expected).abs().max().item() <= 1e-4


def test_gguf_names_map_to_hf_names():
    assert hf_name("blk.3.attn_q.weight") == "model.layers.3.self_attn.q_proj.weight"
    assert hf_name("output.weight") == "lm_head.weight"
    assert hf_name("blk.0.ssm_in.weight") is None


def test_not_a_gguf_file_is_refused(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(CheckpointError, match="broken.gguf"):
        Engine.load(bad, progress=False)
