"""Engine benchmark: Zero vs R1 vs transformers' `generate`, side by side, on the same weights and dtype.

    .venv/bin/python benchmarks/engine.py [--models smollm2,qwen0.5b] [--dtype float32] [--threads N]

Checkpoints: the bundled SmolLM2-135M-Instruct (converted once with `prepare-bundled`) and a random
checkpoint shaped like Qwen2.5-0.5B (hidden 896, 24 layers, 14 heads / 2 kv heads, intermediate 4864,
vocab 151,936, tied), built with transformers and cached under var/bench/. Every (checkpoint, engine)
cell runs in its own subprocess so load time and peak RSS are its own. Figures per cell:
- load time (s);
- prefill tok/s: a 512-token prompt to its first generated token;
- decode tok/s: batch 1, 256 new tokens after that prompt (end-of-sequence ignored so every engine
  decodes the same count); Zero decodes only ZERO_DECODE tokens, because it recomputes the whole
  sequence at every step;
- peak RSS (MiB).
Plus the memory-bandwidth bound: bytes of weights read per decoded token against the GB/s at which this
machine streams memory (a sum over 1 GiB), with the GB/s of a large torch.mv for comparison.

The machine is shared: run it under real-time scheduling so other processes cannot preempt the cells,
`chrt -f 50 .venv/bin/python benchmarks/engine.py` (root), or on an otherwise idle machine.

`--suite batching` (benchmarks/engine_batching.py) measures R1's continuous batching, prefix cache and
int8 against transformers and Zero on the bundled SmolLM2 instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROMPT_TOKENS, DECODE_TOKENS, ZERO_DECODE = 512, 256, 8
QWEN05_SHAPE = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                    intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=32768,
                    rope_theta=1000000.0, rms_norm_eps=1e-6, bos_token_id=151643, eos_token_id=151645)


def model_path(name: str) -> Path:
    if name == "smollm2":
        from model_core.convert import prepare_bundled

        return prepare_bundled(ROOT / "var/models/smollm2-135m-instruct", progress=False)[0]
    dest = ROOT / "var/bench/qwen2.5-0.5b-shape"
    if not (dest / "model.safetensors").is_file():
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM

        sys.path.insert(0, str(ROOT / "tests/model_core"))
        from conftest import copy_tokenizer

        dest.mkdir(parents=True, exist_ok=True)
        copy_tokenizer("qwen-2.5", dest)
        torch.manual_seed(0)
        Qwen2ForCausalLM(Qwen2Config(**QWEN05_SHAPE)).save_pretrained(dest, max_shard_size="4GB")
    return dest


def prompt_ids(vocab: int) -> list[int]:
    import torch

    g = torch.Generator().manual_seed(0)
    return torch.randint(100, min(vocab, 30000), (PROMPT_TOKENS,), generator=g).tolist()


def worker(kind: str, path: str, dtype: str, decode_tokens: int) -> dict:
    """One cell, in this (fresh) process."""
    import torch

    torch.manual_seed(0)
    started = time.perf_counter()
    if kind == "transformers":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
        load_s = time.perf_counter() - started
        ids = torch.tensor([prompt_ids(model.config.vocab_size)])
        mask = torch.ones_like(ids)

        def gen(n: int) -> float:
            t = time.perf_counter()
            with torch.inference_mode():
                out = model.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False)
            assert out.shape[1] == ids.shape[1] + n
            return time.perf_counter() - t

        first = gen(1)
        total = gen(decode_tokens)
        prefill, decode = PROMPT_TOKENS / first, (decode_tokens - 1) / (total - first)
    else:
        from model_core import Engine, SamplingParams

        threads = torch.get_num_threads()
        if kind == "r1":
            # R1 decodes in its scheduler thread: that thread gets the cores and this one keeps one
            # intra-op thread, as a serving process does (model_core/scheduler.py, THREADS). Two
            # multi-threaded OpenMP teams on 2 CPUs make libgomp stop spinning between regions.
            torch.set_num_threads(1)
        engine = Engine.load(path, profile=kind, dtype=dtype, progress=False,
                             threads=threads if kind == "r1" else None)
        load_s = time.perf_counter() - started
        engine.stop_token_ids = frozenset()  # decode the full count, like min_new_tokens above
        ids = prompt_ids(engine.config.vocab_size)
        n = ZERO_DECODE if kind == "zero" else decode_tokens
        engine.generate([ids[:64]], SamplingParams(max_tokens=2, greedy=True))  # warm-up (allocator, kernels)
        finish = list(engine.stream(ids, SamplingParams(max_tokens=n, greedy=True)))[-1]
        assert finish.usage["completion_tokens"] == n
        prefill, decode = PROMPT_TOKENS / finish.timings["ttft_s"], finish.timings["decode_tok_s"]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"load_s": load_s, "prefill_tok_s": prefill, "decode_tok_s": decode, "peak_rss_mib": rss}


def bandwidth_gbs() -> tuple[float, float]:
    """(read GB/s, GEMV GB/s) over a 1 GiB float32 matrix, far larger than the caches: the speed at
    which this machine can stream memory at all (a sum reads every byte once) and the speed a
    single large matrix-vector product reaches (torch.mv). Decode reads every weight once per token,
    so the first figure bounds it."""
    import torch

    w = torch.randn(16384, 16384)
    x = torch.randn(16384)

    def best(fn) -> float:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return w.numel() * 4 / min(times) / 1e9

    return best(w.sum), best(lambda: torch.mv(w, x))


def weight_bytes_per_token(path: Path, dtype: str) -> int:
    from model_core.config import config_from_hf

    cfg = config_from_hf(json.loads((path / "config.json").read_text()))
    # every matrix is read once per token; the embedding row lookup is negligible unless tied (head)
    params = cfg.num_parameters - (0 if cfg.tie_word_embeddings else cfg.vocab_size * cfg.hidden_size)
    return params * (2 if dtype == "bfloat16" else 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2,qwen0.5b")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--engines", default="transformers,r1,zero")
    ap.add_argument("--decode-tokens", type=int, default=DECODE_TOKENS)
    ap.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch's default)")
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--suite", default="default", choices=("default", "batching"))
    ap.add_argument("--streams", default="1,4,16", help="batching suite: concurrent streams per cell")
    ap.add_argument("--new-tokens", type=int, default=128, help="batching suite: tokens per stream")
    ap.add_argument("--prefix-tokens", type=int, default=1500, help="batching suite: shared prefix for TTFT")
    ap.add_argument("--answer-tokens", type=int, default=512, help="batching suite: Zero vs R1 answer length")
    ap.add_argument("--cell", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.cell:
        from engine_batching import cell

        print(json.dumps(cell(json.loads(args.cell))))
        return
    if args.suite == "batching":
        import torch
        from engine_batching import run_suite

        header = (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.processor() or platform.machine()} · "
                  f"{os.cpu_count()} CPUs · torch {torch.__version__} · {args.threads or torch.get_num_threads()} threads")
        run_suite(__file__, str(model_path("smollm2")), streams=[int(n) for n in args.streams.split(",")],
                  new_tokens=args.new_tokens, prefix_tokens=args.prefix_tokens, answer_tokens=args.answer_tokens,
                  threads=args.threads, header=header)
        return
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.dtype, args.decode_tokens)))
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    rows = []
    for name in args.models.split(","):
        path = model_path(name)
        cells = {}
        for kind in args.engines.split(","):
            if kind == "zero" and args.dtype != "float32":
                continue
            cmd = [sys.executable, __file__, "--worker", kind, str(path), "--dtype", args.dtype,
                   "--threads", str(args.threads), "--decode-tokens", str(args.decode_tokens)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if out.returncode != 0:
                raise SystemExit(f"{name}/{kind} failed:\n{out.stderr[-3000:]}")
            cells[kind] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{name:10} {kind:12} {cells[kind]}", file=sys.stderr)
        rows.append((name, path, cells))
    gbs, gemv_gbs = bandwidth_gbs()
    import torch

    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.processor() or platform.machine()} · "
          f"{os.cpu_count()} CPUs · torch {torch.__version__} · {torch.get_num_threads()} threads · {args.dtype} · "
          f"decode over {args.decode_tokens} new tokens (Zero: {ZERO_DECODE})\n")
    print("| checkpoint | engine | load s | prefill tok/s (512) | decode tok/s | peak RSS MiB | R1 / transformers decode |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, _path, cells in rows:
        base = cells.get("transformers", {}).get("decode_tok_s")
        for kind, c in cells.items():
            ratio = f"{c['decode_tok_s'] / base:.2f}x" if base and kind == "r1" else ""
            label = f"zero ({ZERO_DECODE} tokens)" if kind == "zero" else kind
            print(f"| {name} | {label} | {c['load_s']:.1f} | {c['prefill_tok_s']:.0f} | {c['decode_tok_s']:.1f} "
                  f"| {c['peak_rss_mib']:.0f} | {ratio} |")
    print(f"\nMemory-bandwidth bound: this machine streams memory at {gbs:.1f} GB/s (a sum over 1 GiB); one large "
          f"float matrix-vector product (torch.mv) reaches {gemv_gbs:.1f} GB/s.\n")
    print("| checkpoint | weight bytes read per token | bound tok/s | R1 measured | R1 weight GB/s | share of bound |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, path, cells in rows:
        per_token = weight_bytes_per_token(path, args.dtype)
        bound = gbs * 1e9 / per_token
        r1 = cells.get("r1", {}).get("decode_tok_s", 0.0)
        print(f"| {name} | {per_token / 1e6:.0f} MB | {bound:.1f} | {r1:.1f} | {r1 * per_token / 1e9:.1f} "
              f"| {r1 / bound:.0%} |")

if __name__ == "__main__":
    main()
