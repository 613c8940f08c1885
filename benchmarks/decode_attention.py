"""Decode attention over rows of different lengths: per-row (batch-invariant) vs one padded fused call.

    .venv/bin/python benchmarks/decode_attention.py [--streams 4,16] [--new-tokens 48] [--repeats 2]
        [--threads 2]

On the bundled SmolLM2-135M-Instruct (R1 profile, float32 and int8 weights), `--streams` greedy
requests with prompts of different lengths (about 60 to 1,000 tokens) are decoded together through
`Engine.generate`, end-of-sequence ignored so every row generates `--new-tokens`. Two decode-attention
paths side by side, alternated `--repeats` times in one process, best of each reported:

- rowwise: model_core.model.rowwise_decode_attention (what the product runs): each row attends to exactly
  its own keys through the call a row alone makes;
- padded: one fused `scaled_dot_product_attention` over the rows padded to the longest, with a mask
  (`ragged_attention`, what R1 ran before session 9).

Columns: aggregate decode tok/s (a full run's time less a 1-token run's, i.e. less the prefills), and how many rows' tokens differ from the same request decoded alone
(batch 1). Issue 4 check 1 asks for none.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model_core import Engine, SamplingParams, block_manager  # noqa: E402

MODEL = ROOT / "var/models/smollm2-135m-instruct"


class _Padded(block_manager.BatchView):
    """The BatchView without per-row spans: the model falls back to the padded fused call."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.row_spans = None


def _prompts(engine: Engine, count: int) -> list[list[int]]:
    filler = " Please keep the answer precise, sourced and brief."
    out = []
    for i in range(count):
        repeat = 1 + (i * 90) // max(1, count - 1)  # ~60 to ~1,000 tokens
        out.append(engine.render_chat([{"role": "user", "content": f"Question {i}: explain saving.{filler * repeat}"}]))
    return out


def _run(engine: Engine, prompts: list[list[int]], params: SamplingParams, padded: bool) -> tuple[float, list]:
    """Aggregate decode tok/s (the time of a 1-token run, i.e. the prefills, subtracted) and the tokens."""
    original = block_manager.BatchView
    if padded:
        block_manager.BatchView = _Padded  # type: ignore[misc]
    try:
        t0 = time.perf_counter()
        engine.generate(prompts, SamplingParams(max_tokens=1, greedy=True))
        t1 = time.perf_counter()
        results = engine.generate(prompts, params)
        t2 = time.perf_counter()
    finally:
        block_manager.BatchView = original  # type: ignore[misc]
    decoded = sum(len(r.token_ids) - 1 for r in results)
    return decoded / max(1e-9, (t2 - t1) - (t1 - t0)), [r.token_ids for r in results]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", default="4,16")
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = SamplingParams(max_tokens=args.new_tokens, greedy=True)
    rows = []
    for quantize in (None, "int8"):
        engine = Engine.load(MODEL, profile="r1", progress=False, prefix_cache=False, quantize=quantize)
        engine.stop_token_ids = frozenset()  # decode the full count
        for n in [int(x) for x in args.streams.split(",")]:
            prompts = _prompts(engine, n)
            alone = [engine.generate([p], params)[0].token_ids for p in prompts]
            best = {"rowwise": 0.0, "padded": 0.0}
            differ = {"rowwise": 0, "padded": 0}
            for _ in range(args.repeats):
                for name in ("rowwise", "padded"):
                    rate, ids = _run(engine, prompts, params, padded=name == "padded")
                    best[name] = max(best[name], rate)
                    differ[name] = max(differ[name], sum(a != b for a, b in zip(alone, ids, strict=True)))
            lengths = sorted(len(p) for p in prompts)
            rows.append((quantize or "float32", n, f"{lengths[0]}-{lengths[-1]}", best, differ))
            print(f"  done: {rows[-1][0]} x{n}", file=sys.stderr, flush=True)
    print(f"\nSmolLM2-135M R1, {args.new_tokens} new tokens per row, {args.threads} threads, "
          f"{torch.backends.cpu.get_cpu_capability()}, best of {args.repeats} (decode tok/s: prefill time subtracted)\n")
    print(f"{'weights':8} {'rows':>4} {'prompt toks':>11} | {'rowwise tok/s':>13} {'padded tok/s':>12} "
          f"{'ratio':>6} | {'rows != alone: rowwise':>22} {'padded':>6}")
    for weights, n, span, best, differ in rows:
        ratio = best["rowwise"] / best["padded"] if best["padded"] else float("nan")
        print(f"{weights:8} {n:>4} {span:>11} | {best['rowwise']:>13.1f} {best['padded']:>12.1f} {ratio:>6.2f} | "
              f"{differ['rowwise']:>22} {differ['padded']:>6}")


if __name__ == "__main__":
    main()
