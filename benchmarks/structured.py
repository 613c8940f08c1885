"""Structured output on the bundled SmolLM2: do sampled answers always parse and validate?

    .venv/bin/python benchmarks/structured.py [--model var/models/smollm2-135m-instruct]
        [--per-schema 20] [--temperature 0.7] [--top-p 0.95] [--max-tokens 384] [--threads 1]

Generates ``per-schema`` answers (different seeds, sampling on) for each of 10 varied JSON schemas
(200 answers by default), validates every answer with ``jsonschema`` and prints one table row per
schema: valid / total, finish reasons, mean tokens, and the constraint's own cost per decode step
(mean and p99 ms of the logits processor, caches warming up over the run). A second table measures
the mask computation alone on the 49k-token vocabulary with random logits (cold: first visit of
every state; warm: the same states again).

While the engine does not yet apply ``SamplingParams.response_format`` itself, the script drives
the engine's token loop with the constraint's processor (the exact hook the engine will use).
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time
from pathlib import Path

import jsonschema
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import model_core.constrained as constrained_module  # noqa: E402
import model_core.engine as engine_module  # noqa: E402
from model_core import Engine, SamplingParams  # noqa: E402
from model_core.constrained import constraint_from_response_format, vocabulary_for_tokenizer  # noqa: E402
from model_core.sampling import Sampler  # noqa: E402

S = {"type": "string", "maxLength": 40}
SCHEMAS: list[tuple[str, str, dict]] = [
    ("person", "a fictional person with name, age and city",
     {"type": "object", "properties": {"name": S, "age": {"type": "integer", "minimum": 0}, "city": S},
      "required": ["name", "age", "city"], "additionalProperties": False}),
    ("triage", "a medical triage decision for a patient with a mild fever",
     {"type": "object", "properties": {"urgency": {"enum": ["low", "medium", "high", "emergency"]},
                                       "see_doctor": {"type": "boolean"}, "advice": S},
      "required": ["urgency", "see_doctor", "advice"], "additionalProperties": False}),
    ("portfolio", "a small investment portfolio with up to three holdings",
     {"type": "object", "properties": {"holdings": {"type": "array", "maxItems": 3, "minItems": 1, "items": {
         "type": "object", "properties": {"ticker": {"type": "string", "maxLength": 6}, "weight": {"type": "number"}},
         "required": ["ticker", "weight"], "additionalProperties": False}}, "currency": {"const": "USD"}},
      "required": ["holdings", "currency"], "additionalProperties": False}),
    ("tags", "three keywords about contract law",
     {"type": "array", "items": {"type": "string", "maxLength": 20}, "minItems": 3, "maxItems": 3}),
    ("yesno", "whether a tenant may withhold rent, as yes or no with a confidence",
     {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}, "confidence": {"type": "number"}},
      "required": ["answer", "confidence"], "additionalProperties": False}),
    ("invoice", "an invoice with number, total amount, paid flag and optional note",
     {"type": "object", "properties": {"number": {"type": "integer", "minimum": 1}, "total": {"type": "number"},
                                       "paid": {"type": "boolean"}, "note": {"type": ["string", "null"], "maxLength": 30}},
      "required": ["number", "total", "paid"], "additionalProperties": False}),
    ("address", "a postal address nested inside a customer record",
     {"type": "object", "properties": {"customer": S, "address": {
         "type": "object", "properties": {"street": S, "zip": {"type": "string", "maxLength": 10}, "country": S},
         "required": ["street", "country"], "additionalProperties": False}},
      "required": ["customer", "address"], "additionalProperties": False}),
    ("scores", "test scores of two students as a map from name to score",
     {"type": "object", "additionalProperties": {"type": "integer"}}),
    ("event", "a calendar event with title, day of week and attendees",
     {"type": "object", "properties": {"title": S, "day": {"enum": ["Mon", "Tue", "Wed", "Thu", "Fri"]},
                                       "attendees": {"type": "array", "items": S, "maxItems": 3}},
      "required": ["title", "day", "attendees"], "additionalProperties": False}),
    ("anyof", "either a short answer string or the boolean false",
     {"anyOf": [{"type": "string", "maxLength": 30}, {"type": "boolean"}]}),
]


def engine_applies_response_format() -> bool:
    return "constraint_from_response_format" in inspect.getsource(engine_module)


def generate_one(engine: Engine, vocab, prompt_ids: list[int], fmt: dict, params: SamplingParams,
                 spent: list[float]) -> tuple[str, str, int]:
    """(text, finish_reason, tokens) of one constrained answer; ``spent`` collects processor seconds."""
    constraint = constraint_from_response_format(fmt, vocab, ())

    def timed(ids, logits):
        started = time.perf_counter()
        out = constraint.processor(ids, logits)
        spent.append(time.perf_counter() - started)
        return out

    sampler = Sampler(params, [timed])
    out: list[int] = []
    finish = "length"
    for token in engine._tokens(prompt_ids, params, sampler):  # the engine's own decode loop
        out.append(token)
        if token in engine.stop_token_ids:
            finish = "stop"
            break
    return engine.tokenizer.decode(out), finish, len(out)


def mask_microbenchmark(vocab, eos: int) -> list[tuple[str, float, float, int]]:
    """ms per step of the processor alone over random-logit walks (cold, then warm)."""
    rows = []
    constrained_module._MACHINES.clear()  # cold means cold: forget the machines the run warmed up
    for name, _, schema in SCHEMAS[:4]:
        fmt = {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
        timings: dict[str, list[float]] = {"cold": [], "warm": []}
        for phase in ("cold", "warm"):
            constraint = constraint_from_response_format(fmt, vocab, ())
            gen = torch.Generator().manual_seed(0)
            ids: list[int] = []
            while not ids or ids[-1] != eos:
                logits = torch.randn(len(vocab), generator=gen)
                started = time.perf_counter()
                out = constraint.processor(ids, logits)
                timings[phase].append(time.perf_counter() - started)
                ids.append(int(out.argmax()))
        rows.append((name, 1000 * statistics.mean(timings["cold"]), 1000 * statistics.mean(timings["warm"]),
                     len(timings["cold"])))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="var/models/smollm2-135m-instruct")
    parser.add_argument("--per-schema", type=int, default=20)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    engine = Engine.load(args.model, progress=False)
    started = time.perf_counter()
    vocab = vocabulary_for_tokenizer(engine.tokenizer, engine.stop_token_ids)
    vocab_s = time.perf_counter() - started
    print(f"model {args.model}; vocabulary index of {len(vocab)} tokens built in {vocab_s:.2f} s; "
          f"engine applies response_format itself: {engine_applies_response_format()}")

    print("\n| schema | valid | stop/length | mean tokens | constraint ms/step (mean, p99) |")
    print("|---|---|---|---|---|")
    total_valid = total = 0
    for name, what, schema in SCHEMAS:
        fmt = {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
        messages = [{"role": "user", "content": f"Reply with JSON only: {what}."}]
        prompt_ids = engine.render_chat(messages)
        valid, finishes, lengths, spent = 0, {"stop": 0, "length": 0}, [], []
        for seed in range(args.per_schema):
            params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p,
                                    seed=seed)
            text, finish, n = generate_one(engine, vocab, prompt_ids, fmt, params, spent)
            finishes[finish] += 1
            lengths.append(n)
            try:
                jsonschema.validate(json.loads(text), schema)
                valid += 1
            except (ValueError, jsonschema.ValidationError) as exc:
                print(f"  INVALID {name} seed {seed}: {text[:120]!r} ({str(exc)[:80]})", flush=True)
        total_valid += valid
        total += args.per_schema
        ms = sorted(1000 * s for s in spent)
        p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        print(f"| {name} | {valid}/{args.per_schema} | {finishes['stop']}/{finishes['length']} | "
              f"{statistics.mean(lengths):.1f} | {statistics.mean(ms):.2f}, {p99:.1f} |", flush=True)
    print(f"\nTOTAL valid: {total_valid}/{total}")

    print("\n| schema (random logits, 49k vocab) | cold ms/step | warm ms/step | steps |")
    print("|---|---|---|---|")
    for name, cold, warm, steps in mask_microbenchmark(vocab, next(iter(engine.stop_token_ids))):
        print(f"| {name} | {cold:.2f} | {warm:.2f} | {steps} |")


if __name__ == "__main__":
    main()
