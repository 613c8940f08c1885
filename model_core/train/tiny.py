"""A tiny random checkpoint for tests and the `ci-tiny` recipe, built offline in well under a second.

A byte-level BPE tokenizer (a few hundred tokens) is trained on the given text with `tokenizers`,
the SmolLM2/ChatML chat template is attached, and a 2-layer Llama of hidden size 48 gets random
weights. It is written in model_core's checkpoint format (a Hugging Face directory), so everything
downstream loads it exactly like the real base model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from model_core.checkpoint import hf_state_dict
from model_core.config import ModelConfig
from model_core.model import Transformer

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> HFTokenizer:
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok


def build_tiny_checkpoint(dest: Path, texts: Iterable[str], *, hidden: int = 48, layers: int = 2,
                          vocab_size: int = 512, seed: int = 0) -> Path:
    """Write a tiny random Llama + trained tokenizer + ChatML template into `dest`; returns `dest`."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(texts, vocab_size)
    tok.save(str(dest / "tokenizer.json"))
    eos = tok.token_to_id("<|im_end|>")
    config = ModelConfig(architecture="llama", vocab_size=tok.get_vocab_size(), hidden_size=hidden,
                         intermediate_size=2 * hidden, num_layers=layers, num_heads=4, num_kv_heads=2,
                         head_dim=hidden // 4, rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=2048,
                         tie_word_embeddings=True, attention_bias=False, bos_token_id=tok.token_to_id("<|im_start|>"),
                         eos_token_ids=(eos,), name="verity-tiny")
    torch.manual_seed(seed)
    model = Transformer(config)
    with torch.no_grad():
        model.embed.weight.normal_(0.0, 0.1)  # a unit-variance tied head would start with huge logits
    save_file(hf_state_dict(model), str(dest / "model.safetensors"), metadata={"format": "pt"})
    (dest / "config.json").write_text(json.dumps(config.to_hf_dict(), indent=2) + "\n")
    tok_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
               "chat_template": CHATML_TEMPLATE, "model_max_length": 2048}
    (dest / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")
    (dest / "generation_config.json").write_text(json.dumps({"eos_token_id": eos}) + "\n")
    return dest
