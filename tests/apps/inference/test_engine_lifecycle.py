"""apps.inference: one engine per profile per process, loaded lazily and once under concurrency;
health facts without loading; generation through the real bundled model."""

from __future__ import annotations

import threading
import time

import pytest

from apps.core.errors import ApplicationError, ErrorCode
from apps.inference import services as inference
from tests.apps.inference._support import random_adapter


@pytest.fixture
def fresh_engines(monkeypatch):
    monkeypatch.setattr(inference, "_engines", {})
    monkeypatch.setattr(inference, "load_count", 0)


def test_engine_is_loaded_once_even_when_threads_race(fresh_engines, monkeypatch):
    loads = []

    def slow_load(profile):
        loads.append(profile)
        time.sleep(0.2)  # long enough for every thread to arrive while the first one loads
        return object()

    monkeypatch.setattr(inference, "_engine_load", slow_load)
    results = []
    threads = [threading.Thread(target=lambda: results.append(inference.engine_get("r1"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == ["r1"] and len({id(r) for r in results}) == 1
    assert inference.engine_get("r1") is results[0] and inference.engine_loaded("r1")


def test_unknown_profile_and_missing_checkpoint_are_clear_errors(fresh_engines, settings, tmp_path, caplog):
    with pytest.raises(ApplicationError) as bad_profile:
        inference.engine_get("r2")
    assert bad_profile.value.code == ErrorCode.VALIDATION
    settings.VERITY_MODEL = str(tmp_path / "nowhere")
    with caplog.at_level("ERROR"), pytest.raises(ApplicationError) as missing:
        inference.engine_get("r1")
    assert missing.value.code == ErrorCode.ENGINE_UNAVAILABLE
    # the operator's log names the missing checkpoint; the customer's error never shows server paths
    assert "nowhere" not in missing.value.message and "not available" in missing.value.message
    assert any("nowhere" in r.getMessage() and "prepare-bundled" in r.getMessage() for r in caplog.records)
    described = inference.engine_describe()
    assert described["ok"] is False and described["checkpoint_present"] is False


def test_describe_does_not_load_weights(fresh_engines, real_model, settings):
    settings.VERITY_MODEL = str(real_model)
    described = inference.engine_describe()
    assert described["ok"] is True and described["loaded_profiles"] == []
    assert not inference.engine_loaded("r1")


@pytest.mark.slow
def test_real_model_streams_reasoning_or_answer_and_finishes(fresh_engines, real_model, settings):
    settings.VERITY_MODEL = str(real_model)
    chunks = list(inference.generation_stream(
        messages=[{"role": "user", "content": "What is compound interest?"}],
        sampling={"temperature": 0.6, "top_p": 0.95, "max_tokens": 999, "not_a_param": 1}, max_tokens=16))
    text = "".join(c.text for c in chunks if c.kind in ("reasoning", "answer"))
    assert text.strip() and chunks[-1].kind == "finish"
    assert chunks[-1].usage["completion_tokens"] <= 16
    assert inference.load_count == 1
    assert inference.chat_token_count([{"role": "user", "content": "hi"}]) > 1
    assert inference.context_length() >= 2048
    assert "smollm2" in inference.engine_version().lower()


def test_r1_serves_base_plus_adapter_and_zero_the_untouched_base(fresh_engines, real_model, settings, tmp_path,
                                                                caplog):
    """Issue 9: the R1 profile serves base + the tuned adapter (VERITY_R1_ADAPTER), Zero serves the base;
    the audit label names the adapter. The adapter here is random (a trained one is not needed to show
    the wiring); a missing adapter file is an operator's error, never a silent fallback to the base."""
    import torch

    adapter = random_adapter(real_model, tmp_path / "r1-domain" / "adapter.safetensors")

    settings.VERITY_MODEL = str(real_model)
    # float R1 here, so that only the adapter tells R1's logits from Zero's (int8 + adapter:
    # test_engine_quantize.py)
    settings.VERITY_ENGINE_QUANTIZE = "none"
    settings.VERITY_R1_ADAPTER = str(tmp_path / "absent.safetensors")
    with caplog.at_level("ERROR"), pytest.raises(ApplicationError) as missing:
        inference.engine_get("r1")
    assert missing.value.code == ErrorCode.ENGINE_UNAVAILABLE and "absent" not in missing.value.message
    assert any("absent.safetensors" in r.getMessage() for r in caplog.records)

    settings.VERITY_R1_ADAPTER = str(adapter)
    r1, zero = inference.engine_get("r1"), inference.engine_get("zero")
    assert r1.info["adapter"] == str(adapter) and zero.info["adapter"] is None
    assert inference.engine_version("r1").endswith("/r1/float32+r1-domain")
    assert "+" not in inference.engine_version("zero")
    ids = torch.tensor([r1.render_chat([{"role": "user", "content": "What is an index fund?"}])])
    pos = torch.arange(ids.shape[1])[None]
    with torch.no_grad():
        assert not torch.allclose(r1.model(ids, pos)[0, -1], zero.model(ids, pos)[0, -1], atol=1e-3)
