"""The ci-tiny recipe end to end (every stage, adapter, card, results table) and its resumability;
the command line of `python -m model_core.train`."""

from __future__ import annotations

import json

import pytest
import torch

from model_core.adapter import read_adapter
from model_core.train.__main__ import RECIPE_NAMES, main
from model_core.train.recipe import RECIPES, run_recipe

STAGES = ["sft", "reward", "grpo", "ppo", "rejection", "twin", "qat"]


def test_ci_tiny_runs_end_to_end_and_resumes(tmp_path) -> None:
    out = tmp_path / "run"
    card = run_recipe(RECIPES["ci-tiny"], out, progress=False, evaluate=False)
    assert list(card["stages"]) == STAGES
    tensors, meta = read_adapter(out / "adapter.safetensors")
    assert meta["recipe"] == "ci-tiny" and all(k.endswith((".lora_a", ".lora_b", ".base_probe")) for k in tensors)
    assert (out / "loss_sft.png").is_file() and (out / "CARD.md").read_text().startswith("# Verity R1 adapter")
    assert card["stages"]["reward"]["pairs_heldout"] > 0
    assert card["stages"]["sft"]["opening_examples"] > 0  # ci-tiny teaches the crisis openings
    # QAT's float twin: its own adapter, trained from the same weights as QAT, not the served one.
    twin, _ = read_adapter(out / "adapters" / "twin.safetensors")
    rejection, _ = read_adapter(out / "adapters" / "rejection.safetensors")
    assert any(not torch.equal(twin[k], tensors[k]) for k in twin if k.endswith(".lora_b"))
    assert any(not torch.equal(twin[k], rejection[k]) for k in twin if k.endswith(".lora_b"))

    # An interrupted run: the QAT stage never finished. The rerun redoes only QAT (and evaluates).
    record = json.loads((out / "progress.json").read_text())
    done_before = {k: v for k, v in record.items() if k != "qat"}
    (out / "progress.json").write_text(json.dumps(done_before))
    (out / "state" / "qat.pt").unlink()
    card = run_recipe(RECIPES["ci-tiny"], out, progress=False, evaluate=True)
    assert {k: card["stages"][k] for k in done_before} == done_before  # earlier stages were not rerun
    assert list(card["stages"]) == [*STAGES, "eval"]
    results = (out / "RESULTS.md").read_text()
    for metric in ("harmful_refused", "benign_answered", "disclaimer_present", "reasoning_format",
                   "crisis_escalated", "mc_accuracy", "perplexity_int8", "int8_heldout_loss_over_reference"):
        assert metric in results
    assert set(card["stages"]["eval"]) == {"base", "tuned (no QAT)", "tuned", "seconds"}


def test_cli_eval_prints_one_table(tiny_dir, tmp_path, capsys) -> None:
    code = main(["eval", "--base", str(tiny_dir), "--results", str(tmp_path / "R.md"), "--per-kind", "1",
                 "--garak", "0", "--max-new-tokens", "4", "--no-progress", "--threads", "1"])
    assert code == 0
    assert "| harmful_refused |" in capsys.readouterr().out and (tmp_path / "R.md").is_file()


def test_cli_rejects_an_unknown_recipe_and_a_missing_adapter(tiny_dir, tmp_path, capsys) -> None:
    assert sorted(RECIPES) == sorted(RECIPE_NAMES)
    with pytest.raises(SystemExit) as exc:
        main(["train", "--recipe", "nope"])
    assert exc.value.code == 2
    code = main(["eval", "--base", str(tiny_dir), "--adapter", f"x={tmp_path / 'missing.safetensors'}",
                 "--results", str(tmp_path / "R.md"), "--no-progress"])
    assert code == 2 and "missing.safetensors" in capsys.readouterr().err


def test_training_package_imports_no_django_apps_or_transformers() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, pkgutil, importlib, model_core.train\n"
            "for m in pkgutil.iter_modules(model_core.train.__path__): importlib.import_module('model_core.train.' + m.name)\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'django', 'celery', 'apps', 'config', 'transformers', 'garak'})))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[3], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
