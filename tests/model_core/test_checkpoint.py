"""Hugging Face checkpoint loading: sharded and single files, tied weights, the name table, and the
errors an operator sees for broken or unsupported checkpoints (each names the file/tensor/field)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from model_core import CheckpointError, Engine
from model_core.checkpoint import HF_NAME_TABLE, expected_hf_names, load_checkpoint, map_name


def _copy(src: Path, tmp_path: Path) -> Path:
    dest = tmp_path / src.name
    shutil.copytree(src, dest)
    return dest


def _edit_config(path: Path, **changes) -> None:
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


def test_sharded_checkpoint_loads_every_shard_and_ties_the_head(checkpoints):
    path = checkpoints["llama3-scaled-sharded"]
    assert (path / "model.safetensors.index.json").is_file() and len(list(path.glob("*.safetensors"))) > 1
    ckpt = load_checkpoint(path, progress=False)
    assert ckpt.model.lm_head.weight.data_ptr() == ckpt.model.embed.weight.data_ptr()
    assert ckpt.config.rope_scaling["rope_type"] == "llama3"


def test_untied_checkpoint_keeps_a_separate_head(checkpoints):
    ckpt = load_checkpoint(checkpoints["llama-untied"], progress=False)
    assert ckpt.model.lm_head.weight.data_ptr() != ckpt.model.embed.weight.data_ptr()
    assert ckpt.model.layers[0].attn.wqkv.bias is None  # llama: no q/k/v bias


def test_name_table_covers_every_hf_tensor_once(checkpoints):
    ckpt = load_checkpoint(checkpoints["qwen2-r1"], progress=False)
    names = expected_hf_names(ckpt.config)
    assert len(names) == len(set(names)) == 2 + 1 + 2 * 12  # embed, norm, head; 12 per Qwen2 layer
    assert all(map_name(n) is not None for n in names)
    assert map_name("model.layers.1.self_attn.k_proj.bias") == ("layers.1.attn.wqkv.bias", "k")
    assert len(HF_NAME_TABLE) == 15


def test_missing_directory_and_config(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        Engine.load(tmp_path / "absent", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        Engine.load(tmp_path / "empty", progress=False)


def test_unsupported_architecture_names_the_field(checkpoints, tmp_path):
    path = _copy(checkpoints["qwen2-r1"], tmp_path)
    _edit_config(path, architectures=["MixtralForCausalLM"], model_type="mixtral")
    with pytest.raises(CheckpointError, match="'architectures'.*Mixtral"):
        Engine.load(path, progress=False)


@pytest.mark.parametrize(("change", "field"), [
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling"),
    ({"use_sliding_window": True}, "use_sliding_window"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"num_key_value_heads": 3}, "num_key_value_heads"),
    ({"hidden_size": "64"}, "hidden_size"),
])
def test_config_fields_the_model_cannot_honour_are_refused(checkpoints, tmp_path, change, field):
    path = _copy(checkpoints["qwen2-r1"], tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    if "rope_scaling" in change:
        cfg.pop("rope_parameters", None)  # transformers 5 writes RoPE settings here instead
    cfg.update(change)
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=field) as err:
        Engine.load(path, progress=False)
    assert err.value.field == field


def test_missing_tensor_is_named(checkpoints, tmp_path):
    path = _copy(checkpoints["qwen2-r1"], tmp_path)
    tensors = load_file(path / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"model\.layers\.1\.mlp\.up_proj\.weight"):
        Engine.load(path, progress=False)


def test_wrong_shape_names_tensor_and_expected_shape(checkpoints, tmp_path):
    path = _copy(checkpoints["qwen2-r1"], tmp_path)
    tensors = load_file(path / "model.safetensors")
    tensors["model.layers.0.self_attn.o_proj.weight"] = tensors["model.layers.0.self_attn.o_proj.weight"][:, :32].clone()
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"o_proj\.weight.*\(64, 32\).*\(64, 64\)"):
        Engine.load(path, progress=False)


def test_unexpected_tensor_is_named(checkpoints, tmp_path):
    path = _copy(checkpoints["qwen2-r1"], tmp_path)
    tensors = load_file(path / "model.safetensors")
    tensors["model.layers.7.self_attn.q_proj.weight"] = tensors["model.layers.0.self_attn.q_proj.weight"].clone()
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'model\.layers\.7"):
        Engine.load(path, progress=False)


def test_missing_shard_named_by_the_index(checkpoints, tmp_path):
    path = _copy(checkpoints["qwen2-tied-sharded"], tmp_path)
    shard = sorted(path.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=shard.name):
        Engine.load(path, progress=False)


def test_truncated_safetensors_file(checkpoints, tmp_path):
    path = _copy(checkpoints["qwen2-r1"], tmp_path)
    (path / "model.safetensors").write_bytes(b"\x10\x00")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        Engine.load(path, progress=False)


def test_missing_tokenizer_is_named(checkpoints, tmp_path):
    path = _copy(checkpoints["qwen2-r1"], tmp_path)
    (path / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        Engine.load(path, progress=False)
