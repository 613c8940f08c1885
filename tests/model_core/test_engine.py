"""Engine behaviour a caller notices: profiles and their windows, stopping, seeds, streaming events,
the R1 reasoning split, cancellation and input errors. Uses the small random checkpoints of conftest."""

from __future__ import annotations

import json
import shutil
import threading

import pytest
import torch

from model_core import ContextLengthError, Engine, Result, SamplingParams, StreamEvent

GREEDY = SamplingParams(max_tokens=24, greedy=True)


@pytest.fixture(scope="module")
def r1(checkpoints):
    return Engine.load(checkpoints["qwen2-r1"], profile="r1", progress=False)


@pytest.fixture(scope="module")
def zero(checkpoints):
    return Engine.load(checkpoints["qwen2-r1"], profile="zero", progress=False)


@pytest.fixture(scope="module")
def short_window(checkpoints, tmp_path_factory):
    """The same weights with a 64-token window, to reach the end of the context cheaply."""
    dest = tmp_path_factory.mktemp("short") / "qwen2-short"
    shutil.copytree(checkpoints["qwen2-r1"], dest)
    cfg = json.loads((dest / "config.json").read_text())
    cfg["max_position_embeddings"] = 64
    (dest / "config.json").write_text(json.dumps(cfg))
    return Engine.load(dest, profile="r1", progress=False)


PROMPT = [1000 + 37 * i for i in range(12)]


def test_info_describes_the_loaded_engine(r1, zero):
    assert r1.info == {"name": r1.info["name"], "architecture": "qwen2", "context_length": 32768, "profile": "r1",
                       "dtype": "float32", "kv_dtype": "float32", "device": "cpu", "is_r1": True, "quantization": None,
                       "adapter": None}
    assert zero.context_length == 4096 and zero.info["profile"] == "zero"


def test_zero_refuses_prompts_beyond_4096_tokens(zero):
    with pytest.raises(ContextLengthError, match="4096"):
        zero.generate([[5] * 4097], GREEDY)
    assert issubclass(ContextLengthError, ValueError)


def test_r1_refuses_prompts_beyond_the_checkpoint_window(r1, short_window):
    with pytest.raises(ContextLengthError, match="32768"):
        r1.stream([5] * 32768, GREEDY)
    with pytest.raises(ContextLengthError, match="64"):
        short_window.generate([[5] * 64], GREEDY)


def test_generation_stops_at_the_end_of_the_window(short_window):
    [res] = short_window.generate([[5] * 60], SamplingParams(max_tokens=50, greedy=True))
    assert res.finish_reason == "length"
    assert len(res.token_ids) <= 4 and res.usage["total_tokens"] <= 64


def test_max_tokens_and_usage(r1):
    [res] = r1.generate([PROMPT], SamplingParams(max_tokens=5, greedy=True))
    assert isinstance(res, Result)
    assert len(res.token_ids) <= 5
    assert res.usage == {"prompt_tokens": 12, "completion_tokens": len(res.token_ids),
                         "total_tokens": 12 + len(res.token_ids)}
    assert res.finish_reason == ("length" if len(res.token_ids) == 5 else "stop")


def test_stop_string_ends_the_answer_before_it(zero):
    [full] = zero.generate([PROMPT], GREEDY)
    assert len(full.text) > 12, "random model should produce some text"
    stop = full.text[6:9]
    [res] = zero.generate([PROMPT], SamplingParams(max_tokens=24, greedy=True, stop=[stop]))
    assert res.finish_reason == "stop"
    assert res.text == full.text[:full.text.index(stop)]
    assert stop not in res.text


def test_stop_token_id_ends_generation_with_it(r1):
    [full] = r1.generate([PROMPT], GREEDY)
    target = full.token_ids[3]
    [res] = r1.generate([PROMPT], SamplingParams(max_tokens=24, greedy=True, stop_token_ids=[target]))
    assert res.finish_reason == "stop"
    assert res.token_ids == full.token_ids[:full.token_ids.index(target) + 1]


def test_same_seed_same_tokens_and_profiles_agree_on_samples(r1, zero):
    params = SamplingParams(max_tokens=16, temperature=0.9, top_p=0.95, seed=1234)
    a = r1.generate([PROMPT], params)[0].token_ids
    b = r1.generate([PROMPT], params)[0].token_ids
    c = zero.generate([PROMPT], params)[0].token_ids
    other = r1.generate([PROMPT], SamplingParams(max_tokens=16, temperature=0.9, top_p=0.95, seed=99))[0].token_ids
    assert a == b == c
    assert a != other


def test_stream_events_add_up_to_the_result(r1):
    events = list(r1.stream(PROMPT, GREEDY))
    assert all(isinstance(e, StreamEvent) for e in events)
    assert [e.kind for e in events][-1] == "finish" and all(e.kind != "finish" for e in events[:-1])
    finish = events[-1]
    assert set(finish.timings) == {"ttft_s", "total_s", "decode_tok_s"} and finish.usage["prompt_tokens"] == 12
    [res] = r1.generate([PROMPT], GREEDY)
    assert [t for e in events for t in e.token_ids] == res.token_ids
    assert "".join(e.text for e in events if e.kind == "answer") == res.text


def test_r1_chat_prompt_starts_in_reasoning_and_zero_gives_raw_text(r1, zero):
    messages = [{"role": "user", "content": "Is 17 prime?"}]
    ids = r1.render_chat(messages)
    assert r1.tokenizer.decode(ids, skip_special_tokens=False).endswith("<think>\n")
    [fast] = r1.generate([messages], GREEDY)
    [slow] = zero.generate([messages], GREEDY)
    assert fast.token_ids == slow.token_ids
    # a random model never closes the block: everything it says is reasoning under R1, raw text under Zero
    assert fast.text == "" and fast.reasoning
    assert slow.reasoning == "" and slow.text.startswith(fast.reasoning.strip()[:5])


def test_plain_prompt_without_think_is_answer(r1):
    [res] = r1.generate([PROMPT], GREEDY)
    assert res.reasoning == "" and res.text


def test_cancel_event_stops_the_stream(r1):
    cancel = threading.Event()
    cancel.set()
    events = list(r1.stream(PROMPT, SamplingParams(max_tokens=20, greedy=True), cancel=cancel))
    # R1's scheduler retires a cancelled request before its next step: set up front, nothing is generated
    assert events[-1].finish_reason == "cancelled" and events[-1].usage["completion_tokens"] == 0


def test_bad_inputs_raise_value_errors(r1, checkpoints):
    with pytest.raises(ValueError, match=r"prompt\[1\]"):
        r1.generate([[1, 10**7]], GREEDY)
    with pytest.raises(ValueError, match="prompt"):
        r1.generate([[]], GREEDY)
    with pytest.raises(ValueError, match="profile"):
        Engine.load(checkpoints["qwen2-r1"], profile="fast", progress=False)
    with pytest.raises(ValueError, match="float32"):
        Engine.load(checkpoints["qwen2-r1"], profile="zero", dtype="bfloat16", progress=False)


def test_bfloat16_r1_generates(checkpoints):
    engine = Engine.load(checkpoints["llama-untied"], profile="r1", dtype="bfloat16", progress=False)
    [res] = engine.generate([PROMPT], SamplingParams(max_tokens=8, greedy=True))
    assert engine.model.embed.weight.dtype == torch.bfloat16 and 1 <= len(res.token_ids) <= 8


def test_concurrent_streams_from_threads_give_the_single_thread_result(r1):
    [expected] = r1.generate([PROMPT], GREEDY)
    results: list[list[int]] = []

    def run() -> None:
        results.append(r1.generate([PROMPT], GREEDY)[0].token_ids)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected.token_ids] * 3


@pytest.mark.cuda
def test_cuda_bfloat16_matches_cpu_greedy_start(checkpoints):
    cpu = Engine.load(checkpoints["qwen2-r1"], profile="r1", progress=False)
    gpu = Engine.load(checkpoints["qwen2-r1"], profile="r1", dtype="bfloat16", device="cuda", progress=False)
    ids = PROMPT
    with torch.inference_mode():
        a = cpu.model(torch.tensor([ids]), torch.arange(len(ids))[None])[0, -1]
        b = gpu.model(torch.tensor([ids], device="cuda"), torch.arange(len(ids), device="cuda")[None])[0, -1]
    assert torch.allclose(a, b.float().cpu(), atol=0.1, rtol=0.05)
    assert gpu.generate([ids], SamplingParams(max_tokens=8, greedy=True))[0].usage["completion_tokens"] >= 1


def test_r1_generation_moves_instructions_into_the_user_turn(r1):
    """render_chat keeps transformers' ids by default; what the engine generates from follows DeepSeek's
    R1 advice (no system prompt: the instructions open the user turn)."""
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Is 17 prime?"}]
    folded = r1.render_chat(messages, instructions_in_user_turn=True)
    assert "Be brief.\n\nIs 17 prime?" in r1.tokenizer.decode(folded, skip_special_tokens=False)
    assert r1.render_chat(messages) != folded
    [res] = r1.generate([messages], SamplingParams(max_tokens=1, greedy=True))
    assert res.usage["prompt_tokens"] == len(folded)
