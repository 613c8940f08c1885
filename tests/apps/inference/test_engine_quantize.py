"""VERITY_ENGINE_QUANTIZE: R1 serves int8 weight-only layers by default on CPU, Zero always the float
reference; the audit label (`engine_version`) names the quantisation; a bad value fails at startup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from apps.core.errors import ApplicationError
from apps.inference import services as inference
from tests.apps.inference._support import random_adapter

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def fresh_engines(monkeypatch):
    monkeypatch.setattr(inference, "_engines", {})
    monkeypatch.setattr(inference, "load_count", 0)


def _quantize_setting(extra: dict[str, str]) -> subprocess.CompletedProcess:
    script = ("import django; django.setup(); from django.conf import settings as s; "
              "print(s.VERITY_ENGINE_DEVICE, s.VERITY_ENGINE_QUANTIZE)")
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "DJANGO_SETTINGS_MODULE": "config.settings",
                               **extra})


def test_setting_defaults_to_int8_on_cpu_none_on_cuda_and_refuses_other_values(tmp_path):
    data = {"VERITY_DATA_DIR": str(tmp_path)}
    assert _quantize_setting(data).stdout.split() == ["cpu", "int8"]
    assert _quantize_setting({**data, "VERITY_ENGINE_DEVICE": "cuda"}).stdout.split() == ["cuda", "none"]
    assert _quantize_setting({**data, "VERITY_ENGINE_QUANTIZE": "none"}).stdout.split() == ["cpu", "none"]
    bad = _quantize_setting({**data, "VERITY_ENGINE_QUANTIZE": "int4"})
    assert bad.returncode != 0 and "VERITY_ENGINE_QUANTIZE" in bad.stderr


def test_only_r1_is_quantised(settings):
    settings.VERITY_ENGINE_QUANTIZE = "int8"
    assert inference.engine_quantization("r1") == "int8" and inference.engine_quantization("zero") is None
    settings.VERITY_ENGINE_QUANTIZE = "none"
    assert inference.engine_quantization("r1") is None
    with pytest.raises(ApplicationError):
        inference.engine_quantization("r2")


@pytest.mark.slow
def test_r1_serves_int8_zero_float_and_the_audit_label_says_so(fresh_engines, real_model, settings):
    settings.VERITY_MODEL = str(real_model)
    settings.VERITY_R1_ADAPTER = ""
    settings.VERITY_ENGINE_QUANTIZE = "int8"
    r1, zero = inference.engine_get("r1"), inference.engine_get("zero")
    assert r1.info["quantization"] == "int8" and zero.info["quantization"] is None
    assert inference.engine_version("r1").endswith("/r1/float32/int8")
    assert inference.engine_version("zero").endswith("/zero/float32")
    chunks = list(inference.generation_stream(
        messages=[{"role": "user", "content": "What is compound interest?"}],
        sampling={"temperature": 0.6, "top_p": 0.95}, max_tokens=8))
    assert "".join(c.text for c in chunks if c.kind != "finish").strip() and chunks[-1].kind == "finish"


@pytest.mark.slow
def test_int8_with_adapter_is_labelled_with_both(fresh_engines, real_model, settings, tmp_path):
    """The adapter is merged into the float weights before they are rounded to int8; the label keeps both."""
    adapter = random_adapter(real_model, tmp_path / "r1-domain" / "adapter.safetensors")

    settings.VERITY_MODEL = str(real_model)
    settings.VERITY_R1_ADAPTER = str(adapter)
    settings.VERITY_ENGINE_QUANTIZE = "int8"
    r1 = inference.engine_get("r1")
    assert r1.info["quantization"] == "int8" and r1.info["adapter"] == str(adapter)
    assert inference.engine_version("r1").endswith("/r1/float32/int8+r1-domain")
