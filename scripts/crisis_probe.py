"""Which pack's crisis text an r1-domain adapter writes under each domain's header.

For every crisis prompt of the packs' evaluations (their `must_escalate` cases whose id names a
crisis or suicide), under each of the three domain headers, it scores the three packs' crisis texts
(their first 12 words) after the training format's escalation reasoning, whose last sentence names
the header's domain ("In this legal chat I open with the legal crisis message."). It prints a 3x3
table: rows are the header, columns the text, cells the share of prompts where that text scores
highest, then the mean log-probability margin of the right text over the best wrong one. A
diagnostic for the crisis-text failure of issue 9 (the decision to escalate is right, the text is
another pack's); nothing it prints feeds training.

    .venv/bin/python scripts/crisis_probe.py model_core/adapters/r1-domain/adapter.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    import torch

    from model_core.adapter import merge_adapter
    from model_core.checkpoint import load_checkpoint
    from model_core.train.data import ChatRenderer
    from model_core.train.domain import DECISION
    from model_core.train.modeling import sequence_logprobs
    from model_core.train.packs import DOMAINS, load_pack_evals, load_packs
    from model_core.train.recipe import BUNDLED
    from model_core.train.rewards import _opening

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapters", nargs="+", help="adapter .safetensors files ('base' for none)")
    args = parser.parse_args()
    packs = load_packs()
    prompts = [c.prompt for c in load_pack_evals()
               if c.kind == "must_escalate" and ("crisis" in c.id or "suicid" in c.id)]
    for adapter in args.adapters:
        ckpt = load_checkpoint(REPO / BUNDLED, progress=False)
        if adapter != "base":
            merge_adapter(ckpt.model, adapter)
        ckpt.model.eval()
        renderer, tok = ChatRenderer(ckpt.tokenizer), ckpt.tokenizer
        wins = {h: dict.fromkeys(DOMAINS, 0) for h in DOMAINS}
        margins = {h: 0.0 for h in DOMAINS}
        for header in DOMAINS:
            reasoning = (f"{DECISION['escalate']} The user may be suicidal; escalate with the crisis text. "
                         f"In this {header} chat I open with the {header} crisis message.")
            for prompt in prompts:
                messages = [{"role": "system", "content": packs[header].header}, {"role": "user", "content": prompt}]
                prompt_ids = renderer.prompt_ids(messages)
                bare = tok.encode(renderer.completion_text(reasoning, ""), add_special_tokens=False)
                scores = {}
                for text in DOMAINS:
                    opening = " ".join(packs[text].escalations["crisis"].split()[:12])
                    assert _opening(opening)  # the scorer's 12 words
                    # Encode reasoning and text together, as training does: "\n\n" at the end of a
                    # string is one token, before a word it is two, so a separately encoded prefix
                    # is a context the model never saw. Scored from where the two encodings part.
                    ids = tok.encode(renderer.completion_text(reasoning, opening), add_special_tokens=False)
                    start = next((i for i, (a, b) in enumerate(zip(bare, ids, strict=False)) if a != b), len(bare))
                    with torch.no_grad():
                        logp = sequence_logprobs(ckpt.model, torch.tensor([prompt_ids + ids]))
                    scores[text] = float(logp[0, len(prompt_ids) + start - 1:].sum())
                wins[header][max(scores, key=scores.__getitem__)] += 1
                margins[header] += scores[header] - max(v for k, v in scores.items() if k != header)
        print(f"\n{adapter}: {len(prompts)} crisis prompts; rows = header, columns = text written")
        print("| header | " + " | ".join(DOMAINS) + " | right-text margin (nats) |")
        print("|---|" + "---:|" * (len(DOMAINS) + 1))
        for h in DOMAINS:
            cells = " | ".join(f"{wins[h][t] / len(prompts):.0%}" for t in DOMAINS)
            print(f"| {h} | {cells} | {margins[h] / len(prompts):+.2f} |")


if __name__ == "__main__":
    main()
