"""The `--suite batching` of benchmarks/engine.py: R1's scheduler, prefix cache and int8 side by side.

    .venv/bin/python benchmarks/engine.py --suite batching [--streams 1,4,16] [--new-tokens 128]
        [--prefix-tokens 1500] [--answer-tokens 512] [--threads N]

On the bundled SmolLM2-135M-Instruct, every cell in its own subprocess (load time and peak RSS are
its own), end-of-sequence ignored so every engine generates the same count:
- aggregate decode tok/s at 1, 4 and 16 concurrent streams: R1 (all streams submitted at once to the
  scheduler) and transformers' `generate` on the same prompts as one left-padded batch;
- time to first token of a request sharing a 1,500-token prefix with the one before it, prefix cache
  on and off (minimum of a few runs);
- int8 vs float32 batch-1 decode tok/s and peak RSS;
- Zero vs R1 (float32 and int8) on a 512-token answer: tok/s and peak RSS.
Targets from issue 4 are printed beside the figures.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from typing import Any

PROMPT_TOKENS = 64  # each stream's prompt in the concurrency cells (lengths vary a little per stream)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _prompts(vocab: int, count: int, base: int = PROMPT_TOKENS) -> list[list[int]]:
    import torch

    g = torch.Generator().manual_seed(1)
    return [torch.randint(100, min(vocab, 30000), (base + 3 * i,), generator=g).tolist() for i in range(count)]


def _engine(path: str, **kwargs: Any) -> Any:
    from model_core import Engine

    engine = Engine.load(path, progress=False, **kwargs)
    engine.stop_token_ids = frozenset()  # decode the full count
    return engine


def _streams_cell(path: str, streams: int, new_tokens: int) -> dict:
    from model_core import SamplingParams

    engine = _engine(path, prefix_cache=False, max_running=max(streams, 1))
    engine.generate([[5] * 8], SamplingParams(max_tokens=2, greedy=True))  # warm-up
    prompts = _prompts(engine.config.vocab_size, streams)

    def run(n: int) -> float:
        """Wall time of all streams submitted at once, each read in its own thread (as the app's workers)."""
        t = time.perf_counter()
        events = [engine.stream(p, SamplingParams(max_tokens=n, greedy=True)) for p in prompts]
        counts: list[int] = [0] * streams

        def read(i: int) -> None:
            counts[i] = [e for e in events[i] if e.kind == "finish"][0].usage["completion_tokens"]

        threads = [threading.Thread(target=read, args=(i,)) for i in range(streams)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert counts == [n] * streams
        return time.perf_counter() - t

    # the same method as the transformers cell: decode time = (N tokens) - (1 token, i.e. the prefills)
    first, total = run(1), run(new_tokens)
    return {"decode_tok_s": streams * (new_tokens - 1) / (total - first), "peak_rss_mib": _rss_mib()}


def _transformers_cell(path: str, streams: int, new_tokens: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    prompts = _prompts(model.config.vocab_size, streams)
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])  # left padding
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])

    def gen(n: int) -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                 pad_token_id=0)
        assert out.shape[1] == width + n
        return time.perf_counter() - t

    gen(2)  # warm-up
    first, total = gen(1), gen(new_tokens)
    return {"decode_tok_s": streams * (new_tokens - 1) / (total - first), "peak_rss_mib": _rss_mib()}


def _ttft_cell(path: str, prefix_tokens: int, cache: bool) -> dict:
    from model_core import SamplingParams

    engine = _engine(path, prefix_cache=cache)
    prefix = _prompts(engine.config.vocab_size, 1, prefix_tokens)[0][:prefix_tokens]
    params = SamplingParams(max_tokens=4, greedy=True)
    engine.generate([prefix[:64]], params)  # warm-up
    engine.generate([prefix + [901, 902, 903]], params)  # the earlier request that shares the prefix
    ttfts = []
    for q in range(3 if cache else 2):
        finish = list(engine.stream(prefix + [910 + q, 920 + q, 930 + q], params))[-1]
        ttfts.append(finish.timings["ttft_s"])
    return {"ttft_s": min(ttfts), "peak_rss_mib": _rss_mib()}


def _answer_cell(path: str, profile: str, quantize: str | None, answer_tokens: int) -> dict:
    from model_core import SamplingParams

    engine = _engine(path, profile=profile, quantize=quantize)
    prompt = _prompts(engine.config.vocab_size, 1, 16)[0]
    engine.generate([prompt[:4]], SamplingParams(max_tokens=2, greedy=True))  # warm-up
    t = time.perf_counter()
    finish = list(engine.stream(prompt, SamplingParams(max_tokens=answer_tokens, greedy=True)))[-1]
    wall = time.perf_counter() - t
    assert finish.usage["completion_tokens"] == answer_tokens
    return {"tok_s": answer_tokens / wall, "decode_tok_s": finish.timings["decode_tok_s"], "peak_rss_mib": _rss_mib()}


def cell(spec: dict) -> dict:
    """One measurement, in this (fresh) process."""
    import torch

    torch.manual_seed(0)
    kind = spec["kind"]
    if kind == "streams":
        return _streams_cell(spec["path"], spec["streams"], spec["new_tokens"])
    if kind == "transformers":
        return _transformers_cell(spec["path"], spec["streams"], spec["new_tokens"])
    if kind == "ttft":
        return _ttft_cell(spec["path"], spec["prefix_tokens"], spec["cache"])
    return _answer_cell(spec["path"], spec["profile"], spec.get("quantize"), spec["answer_tokens"])


def _run(script: str, spec: dict, threads: int) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    cmd = [sys.executable, script, "--cell", json.dumps(spec), "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"cell {spec} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{json.dumps(spec)} -> {result}", file=sys.stderr)
    return result


def _target(ok: bool) -> str:
    return "met" if ok else "NOT met"


def run_suite(script: str, path: str, *, streams: list[int], new_tokens: int, prefix_tokens: int,
              answer_tokens: int, threads: int, header: str) -> None:
    base = {"path": path}
    r1 = {n: _run(script, {**base, "kind": "streams", "streams": n, "new_tokens": new_tokens}, threads) for n in streams}
    hf = {n: _run(script, {**base, "kind": "transformers", "streams": n, "new_tokens": new_tokens}, threads)
          for n in streams}
    ttft = {c: _run(script, {**base, "kind": "ttft", "prefix_tokens": prefix_tokens, "cache": c}, threads)
            for c in (False, True)}
    answer = {name: _run(script, {**base, "kind": "answer", "profile": prof, "quantize": q,
                                  "answer_tokens": answer_tokens}, threads)
              for name, prof, q in (("zero", "zero", None), ("r1 float32", "r1", None), ("r1 int8", "r1", "int8"))}
    print(f"\n{header} · suite batching · SmolLM2-135M-Instruct · {new_tokens} new tokens per stream, "
          f"prompts of ~{PROMPT_TOKENS} tokens · prefix {prefix_tokens} tokens · answer {answer_tokens} tokens\n")
    print("| concurrent streams | R1 aggregate decode tok/s | transformers batch generate tok/s | R1 / transformers "
          "| R1 vs 1 stream |")
    print("|---:|---:|---:|---:|---:|")
    one = r1[streams[0]]["decode_tok_s"]
    for n in streams:
        a, b = r1[n]["decode_tok_s"], hf[n]["decode_tok_s"]
        print(f"| {n} | {a:.1f} | {b:.1f} | {a / b:.2f}x | {a / one:.2f}x |")
    if len(streams) > 1:
        top = streams[-1]
        ratio = r1[top]["decode_tok_s"] / one
        print(f"\nTarget: {top} streams >= 6x the single-stream aggregate: {ratio:.2f}x, {_target(ratio >= 6)}")
    off, on = ttft[False]["ttft_s"], ttft[True]["ttft_s"]
    print(f"\n| prefix cache | TTFT s ({prefix_tokens}-token shared prefix, min of runs) |\n|---|---:|")
    print(f"| off | {off:.3f} |\n| on | {on:.3f} |")
    print(f"\nTarget: cache on >= 5x sooner: {off / on:.1f}x, {_target(off / on >= 5)}")
    print(f"\n| engine | {answer_tokens}-token answer tok/s | decode tok/s | peak RSS MiB |\n|---|---:|---:|---:|")
    for name, c in answer.items():
        print(f"| {name} | {c['tok_s']:.1f} | {c['decode_tok_s']:.1f} | {c['peak_rss_mib']:.0f} |")
    f32, i8, zero = answer["r1 float32"], answer["r1 int8"], answer["zero"]
    speed = i8["decode_tok_s"] / f32["decode_tok_s"]
    print(f"\nTarget: int8 batch-1 decode >= 1.3x float32: {speed:.2f}x "
          f"(peak RSS {i8['peak_rss_mib']:.0f} vs {f32['peak_rss_mib']:.0f} MiB), {_target(speed >= 1.3)}")
    best = max(f32["tok_s"], i8["tok_s"]) / zero["tok_s"]
    print(f"Target: R1 >= 10x Zero tok/s on the answer: {best:.1f}x, {_target(best >= 10)}")
    mem = i8["peak_rss_mib"] / zero["peak_rss_mib"]
    print(f"Target: R1 int8 peak RSS <= half of Zero's: {mem:.2f}x, {_target(mem <= 0.5)}")
