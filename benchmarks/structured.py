"""Structured output on the bundled SmolLM2: do sampled answers always parse and validate?

    .venv/bin/python benchmarks/structured.py [--model var/models/smollm2-135m-instruct]
        [--per-schema 20] [--free-per-schema 3] [--temperature 0.7] [--top-p 0.95] [--max-tokens 96]
        [--threads 1] [--mask-bench]

Issue 4, check 4: for each of the 10 schemas in ``benchmarks/structured_schemas.json`` (objects,
arrays, enums, const, required and optional fields, strings, integers, numbers, booleans, null,
nesting, a free-keyed map, anyOf) it generates ``--per-schema`` answers (seeds 0..n-1, sampling on)
through the public API, ``Engine.generate``/``stream`` with ``SamplingParams(response_format=...)``,
and validates every answer with ``jsonschema``. An answer that does not parse, does not validate or
was cut by ``max_tokens`` before its EOS counts as a failure (the constraint closes the value in
time for the budget, ``model_core/constrained_budget.py``).

One table row per schema: valid / total, finish reasons, mean answer tokens, decode tok/s with the
constraint and without it (the same prompts and seeds, no ``response_format``, ``--free-per-schema``
answers) and the constraint's overhead on decode speed. ``--mask-bench`` adds the cost of the mask
alone on the 49k-token vocabulary with random logits (cold: first visit of every state; warm: again).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jsonschema
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import model_core.constrained as constrained_module  # noqa: E402
from model_core import Engine, SamplingParams  # noqa: E402
from model_core.constrained import constraint_from_response_format, vocabulary_for_tokenizer  # noqa: E402

SCHEMA_FILE = Path(__file__).with_name("structured_schemas.json")


def load_schemas() -> list[dict]:
    """[{"name", "prompt", "schema"}] — the 10 schemas shared with tests/model_core/test_constrained.py."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def response_format(entry: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": entry["name"], "schema": entry["schema"]}}


def messages_for(entry: dict) -> list[dict]:
    return [{"role": "user", "content": f"Reply with JSON only: {entry['prompt']}."}]


def run_one(engine: Engine, messages: list[dict], params: SamplingParams) -> tuple[str, str, int, float]:
    """(answer text, finish reason, completion tokens, decode tok/s) of one request via ``stream``."""
    text: list[str] = []
    for event in engine.stream(messages, params):
        if event.kind == "answer":
            text.append(event.text)
        elif event.kind == "finish":
            usage, timings = event.usage or {}, event.timings or {}
            return "".join(text), event.finish_reason or "", usage.get("completion_tokens", 0), \
                timings.get("decode_tok_s", 0.0)
    raise RuntimeError("stream ended without a finish event")


def check(text: str, finish: str, schema: dict) -> str | None:
    """None when the answer is valid; otherwise why not."""
    if finish != "stop":
        return f"finish reason {finish!r}"
    try:
        jsonschema.validate(json.loads(text), schema)
    except (ValueError, jsonschema.ValidationError) as exc:
        return str(exc).splitlines()[0][:100]
    return None


def mask_microbenchmark(vocab, eos: int, schemas: list[dict]) -> list[tuple[str, float, float, int]]:
    """ms per step of the processor alone over random-logit walks (cold, then warm)."""
    rows = []
    constrained_module._MACHINES.clear()  # cold means cold: forget the machines the run warmed up
    for entry in schemas[:4]:
        timings: dict[str, list[float]] = {"cold": [], "warm": []}
        for phase in ("cold", "warm"):
            constraint = constraint_from_response_format(response_format(entry), vocab, ())
            gen = torch.Generator().manual_seed(0)
            ids: list[int] = []
            while not ids or ids[-1] != eos:
                logits = torch.randn(len(vocab), generator=gen)
                started = time.perf_counter()
                out = constraint.processor(ids, logits)
                timings[phase].append(time.perf_counter() - started)
                ids.append(int(out.argmax()))
        rows.append((entry["name"], 1000 * statistics.mean(timings["cold"]),
                     1000 * statistics.mean(timings["warm"]), len(timings["cold"])))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="var/models/smollm2-135m-instruct")
    parser.add_argument("--per-schema", type=int, default=20)
    parser.add_argument("--free-per-schema", type=int, default=3, help="unconstrained answers for the overhead")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mask-bench", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    schemas = load_schemas()

    engine = Engine.load(args.model, progress=False)
    started = time.perf_counter()
    vocab = vocabulary_for_tokenizer(engine.tokenizer, engine.stop_token_ids)
    print(f"model {args.model}, torch {torch.__version__}, {args.threads} thread(s); vocabulary index of "
          f"{len(vocab)} tokens built in {time.perf_counter() - started:.2f} s; {len(schemas)} schemas x "
          f"{args.per_schema} answers, temperature {args.temperature}, top_p {args.top_p}, "
          f"max_tokens {args.max_tokens}")

    print("\n| schema | valid | stop/length | mean tokens | constrained tok/s | free tok/s | overhead |")
    print("|---|---|---|---|---|---|---|")
    total_valid = total = 0
    all_c, all_f = [], []
    for entry in schemas:
        messages = messages_for(entry)
        valid, finishes, lengths, rates, free = 0, {"stop": 0, "length": 0}, [], [], []
        for seed in range(args.per_schema):
            if seed < args.free_per_schema:  # interleaved, so a change in machine load hits both alike
                free.append(run_one(engine, messages, SamplingParams(
                    max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, seed=seed))[3])
            params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p,
                                    seed=seed, response_format=response_format(entry))
            text, finish, n, rate = run_one(engine, messages, params)
            finishes[finish] = finishes.get(finish, 0) + 1
            lengths.append(n)
            rates.append(rate)
            problem = check(text, finish, entry["schema"])
            if problem is None:
                valid += 1
            else:
                print(f"  INVALID {entry['name']} seed {seed}: {text[:120]!r} ({problem})", flush=True)
        c_rate, f_rate = statistics.mean(rates), statistics.mean(free) if free else float("nan")
        all_c.append(c_rate)
        all_f.append(f_rate)
        total_valid += valid
        total += args.per_schema
        print(f"| {entry['name']} | {valid}/{args.per_schema} | {finishes['stop']}/{finishes['length']} | "
              f"{statistics.mean(lengths):.1f} | {c_rate:.1f} | {f_rate:.1f} | {100 * (1 - c_rate / f_rate):+.0f}% |",
              flush=True)
    c_mean, f_mean = statistics.mean(all_c), statistics.mean(all_f)
    print(f"| **all** | **{total_valid}/{total}** | | | {c_mean:.1f} | {f_mean:.1f} | {100 * (1 - c_mean / f_mean):+.0f}% |")
    print("\noverhead = 1 - constrained/free decode tok/s (decode_tok_s from the stream's timings: first token "
          "excluded, so the one-off mask build at the first step is not in it)")

    if args.mask_bench:
        print("\n| schema (random logits, 49k vocab) | cold ms/step | warm ms/step | steps |")
        print("|---|---|---|---|")
        for name, cold, warm, steps in mask_microbenchmark(vocab, next(iter(engine.stop_token_ids)), schemas):
            print(f"| {name} | {cold:.2f} | {warm:.2f} | {steps} |")
    if total_valid != total:
        raise SystemExit(f"{total - total_valid} of {total} answers failed")


if __name__ == "__main__":
    main()
