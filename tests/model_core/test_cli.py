"""The command line, run as a user would: `python -m model_core ...` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "model_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})


def test_generate_json_with_prompt_ids(checkpoints):
    out = run("generate", "--model", str(checkpoints["qwen2-r1"]), "--prompt-ids", "1000,1037,1074",
              "--max-new-tokens", "6", "--greedy", "--json", "--no-progress")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) == {"token_ids", "text", "reasoning", "finish_reason", "usage", "timings"}
    assert 1 <= len(data["token_ids"]) <= 6 and data["usage"]["prompt_tokens"] == 3


def test_generate_is_reproducible_with_a_seed_and_takes_messages(checkpoints, tmp_path):
    messages = tmp_path / "m.json"
    messages.write_text(json.dumps([{"role": "user", "content": "hello"}]))
    args = ("generate", "--model", str(checkpoints["qwen2-r1"]), "--messages", str(messages), "--max-new-tokens",
            "8", "--temperature", "0.8", "--top-p", "0.9", "--seed", "7", "--json", "--no-progress")
    first, second = run(*args), run(*args)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["token_ids"] == json.loads(second.stdout)["token_ids"]
    assert json.loads(first.stdout)["usage"]["prompt_tokens"] > 3  # the chat template was applied


def test_zero_profile_refuses_a_long_prompt_with_a_clear_error(checkpoints):
    ids = ",".join(["5"] * 4100)
    out = run("generate", "--model", str(checkpoints["qwen2-r1"]), "--profile", "zero", "--prompt-ids", ids,
              "--no-progress")
    assert out.returncode == 2
    assert "4096" in out.stderr and "Traceback" not in out.stderr


def test_inspect_reports_architecture_and_template(checkpoints):
    out = run("inspect", str(checkpoints["llama3-scaled-sharded"]), "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["architecture"] == "llama" and info["rope_scaling"]["rope_type"] == "llama3"
    assert info["tied_embeddings"] is True and info["is_r1"] is True and info["tensor_dtypes"] == {"F32": 20}


def test_missing_checkpoint_is_a_one_line_error(tmp_path):
    out = run("generate", "--model", str(tmp_path / "nope"), "--prompt", "hi", "--no-progress")
    assert out.returncode == 2 and "nope" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_prepare_bundled_converts_once_then_skips(tmp_path, smollm2_gguf):
    dest = tmp_path / "smol"
    first = run("prepare-bundled", "--dest", str(dest), "--no-progress", timeout=600)
    assert first.returncode == 0, first.stderr
    assert "converted" in first.stdout and (dest / "model.safetensors").is_file()
    second = run("prepare-bundled", "--dest", str(dest), "--no-progress")
    assert second.returncode == 0 and "already present" in second.stdout
    inspect = run("inspect", str(dest), "--json")
    assert json.loads(inspect.stdout)["layers"] == 30


def test_training_commands_are_part_of_the_cli():
    train, evaluate = run("train", "--help"), run("eval", "--help")
    assert train.returncode == 0 and "--recipe" in train.stdout and "r1-domain" in train.stdout
    assert evaluate.returncode == 0 and "--adapter" in evaluate.stdout
