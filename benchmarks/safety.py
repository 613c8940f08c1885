"""Input-stage latency of the safety pipeline (issue 6, check 5: p50 <= 15 ms per message).

    python benchmarks/safety.py [--messages 300] [--threads 1]

Loads Presidio/spaCy and MiniLM first (once per process, as in production), then times
`SafetyPipeline.check_input` on a mix of domain questions, messages carrying PII, and long
messages, and prints p50/p95 overall and per check (from the verdicts' latency_ms).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

QUESTIONS = [
    "How do index funds work and what fees should I expect?",
    "What is the difference between a Roth IRA and a traditional IRA?",
    "How long does probate usually take in California?",
    "What are the common side effects of metformin?",
    "Can my landlord keep my deposit for normal wear and tear?",
    "Should I pay off my student loans before investing?",
    "What does an HbA1c of 6.1 mean?",
    "Is a verbal agreement legally binding?",
]
PII = [
    "My name is Maria Garcia and my card 4111 1111 1111 1111 was charged twice, what can I do?",
    "Please email me at john.doe@example.com or call 415-555-2671 about my claim.",
    "I'm Daniel Okafor, SSN 219-09-9999, why was my refund delayed?",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--float-encoder", action="store_true",
                        help="MiniLM on its float32 weights instead of int8 (latency comparison only: the "
                             "shipped classifier head is trained on the int8 encoder's embeddings)")
    args = parser.parse_args()
    import django

    django.setup()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import yaml

    from apps.safety import embeddings

    embeddings.INT8 = not args.float_encoder
    from apps.safety.pipeline import SafetyPipeline

    class Pack:  # the shipped finance pack: its rules and its scope run as in production
        domain = "finance"
        data = yaml.safe_load((REPO / "domains" / "finance" / "pack.yaml").read_text())

    pipeline = SafetyPipeline.for_pack(Pack())
    started = time.perf_counter()
    pipeline.check_input("Warm up: my name is Ann Lee.")
    load_s = time.perf_counter() - started
    rng = random.Random(3)
    messages = [rng.choice(QUESTIONS if rng.random() < 0.7 else PII) for _ in range(args.messages)]
    messages += [" ".join(QUESTIONS) * 3]  # one long message (~1,500 characters)
    totals: list[float] = []
    per_check: dict[str, list[float]] = defaultdict(list)
    for text in messages:
        # Every message is timed as a new one: the messages repeat here, a customer's rarely do, so the
        # encoder's cache of recent texts (which spares the scope check a second encoding) starts empty.
        getattr(embeddings, "_cache", {}).clear()
        t0 = time.perf_counter()
        decision = pipeline.check_input(text)
        totals.append((time.perf_counter() - t0) * 1000)
        for verdict in decision.verdicts:
            per_check[verdict.rule.split(".")[0]].append(verdict.latency_ms)
    print(f"models loaded in {load_s:.1f} s; torch threads {torch.get_num_threads()}; {len(totals)} messages")
    print(f"{'check':<14} {'p50 ms':>8} {'p95 ms':>8}")
    for name, values in sorted(per_check.items()):
        print(f"{name:<14} {statistics.median(values):>8.2f} {percentile(values, 0.95):>8.2f}")
    p50 = statistics.median(totals)
    print(f"{'input stage':<14} {p50:>8.2f} {percentile(totals, 0.95):>8.2f}   target p50 <= 15 ms: "
          f"{'met' if p50 <= 15 else 'NOT met'}")


if __name__ == "__main__":
    main()
