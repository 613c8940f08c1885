"""Recipes: the whole R1 pipeline as resumable stages, from a base checkpoint to adapter + card.

Stages, after the DeepSeek-R1 recipe with the seed's RLHF and QAT additions:
1. `sft` — cold-start SFT on the domain set (readable `<think>` reasoning, answer, disclaimer;
   refusals and escalations from the packs), LoRA on every block linear;
2. `reward` — a reward model (copy of the SFT model + scalar head) on preference pairs, Bradley–Terry,
   accuracy on held-out pairs;
3. `grpo` / `ppo` — RL on the training prompts, reward = rule rewards + `rm_weight * tanh(RM score)`,
   KL to the frozen SFT policy;
4. `rejection` — sample the RL policy, keep completions with full rule reward, short SFT on them plus
   the original examples;
5. `twin` — QAT's control: the QAT stage's steps, data order and seed from the same weights, without
   fake quantisation. It is the model a pipeline without QAT ships, so post-training int8 (the twin's
   int8 loss over its float loss) and QAT (the QAT model's int8 loss over the twin's float loss)
   are compared at equal training; its adapter is kept for evaluation, not served;
6. `qat` — SFT with fake-int8 weights, so the served int8 model loses little;
7. `eval` — base vs tuned (with and without QAT) on the evaluation sets.
Each finished stage is recorded in `<out>/progress.json` with its adapter in `<out>/adapters/`; a
rerun skips finished stages and resumes an unfinished one from its trainer checkpoint.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from model_core.checkpoint import load_checkpoint
from model_core.train.data import ChatRenderer, pad_token_id
from model_core.train.domain import (
    escalation_openings,
    load_decision_examples,
    load_domain_examples,
    preference_pairs,
    rejection_sample,
    rl_prompts,
    split_heldout,
)
from model_core.train.evaluate import EvalConfig
from model_core.train.lora import apply_lora, load_adapter_weights, save_adapter
from model_core.train.packs import load_packs
from model_core.train.qat import disable_qat, enable_qat
from model_core.train.reward_model import RewardModel, pair_accuracy, train_reward_model
from model_core.train.rewards import rule_reward
from model_core.train.rl import RLConfig, ValueHead, grpo_train, ppo_train
from model_core.train.sft import pack_examples, packed_loss, sft_train
from model_core.train.trainer import TrainConfig, save_loss_curve

BUNDLED = Path("var/models/smollm2-135m-instruct")


@dataclass
class Recipe:
    name: str
    base: str | None  # checkpoint directory; None builds the tiny random model (ci-tiny)
    sft: TrainConfig
    rm: TrainConfig
    rl: RLConfig
    qat: TrainConfig
    sft2: TrainConfig
    evaluation: EvalConfig
    lora_rank: int = 8
    lora_alpha: float = 16.0
    variants: int = 2
    seq_len: int = 384
    sft_batch: int = 2
    rm_batch: int = 4
    rl_algorithms: tuple[str, ...] = ("grpo",)
    rm_weight: float = 0.5
    rejection_prompts: int = 24
    rejection_samples: int = 2
    threads: int | None = None
    decisions: bool = True  # train on sft_decisions.jsonl too
    refuse_decision_weight: float = 1.0  # loss weight of the decision-only refusals (a prior shift)
    escalate_weight: float = 1.0  # loss weight of the escalation examples
    # Escalation keys every pack has whose openings are also taught under every header
    # (`escalation_openings`), in every SFT-style stage. Off in r1-domain until a full run measures it
    # (session 13 measured it only as extra steps on the shipped adapter: crisis 7 -> 11 of 12).
    escalation_openings: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)


RECIPES: dict[str, Recipe] = {
    # SmolLM2-135M on two idle CPU cores (measured: ~5.9 s per SFT step of 4 rows x 384 tokens with LoRA
    # on an AVX-512 VM). The data: ~1,180 examples (domain answers, refusals, escalations in two
    # phrasings, plus the general refusals), each reasoning opening with its decision; 630 packed rows
    # of 384 for training plus ~210 rows of decision-only examples. SFT 230 steps x 4 rows (~1.1 epochs) ~25 min, reward model ~6, GRPO ~8,
    # rejection sampling + SFT ~7, QAT and its float twin 60 steps each ~3.5 + 3, eval ~10 (batched
    # greedy generation) — about an hour, under the 90-minute target. Completions get 224 new tokens in
    # RL and 256 in evaluation: the disclaimers alone are 70-95 tokens. The decision-only refusals weigh
    # 6x in the SFT loss: session 10's SFT adapter ranked harmful above benign at AUC 0.973, but its
    # refuse-minus-answer log-odds threshold that separates them best sat ~2 nats below its natural
    # one (44% refused in generation); log(6) = 1.8 nats moves the prior there. Escalations weigh 3x
    # (session 11: 4 of 12 crisis prompts answered, and the wrong pack's crisis text in others), and
    # QAT and its twin run 60 steps (session 11: 40 steps gave 0.54x post-training int8's loss).
    "r1-domain": Recipe(
        name="r1-domain", base=str(BUNDLED),
        sft=TrainConfig(steps=230, lr=4e-4, warmup_steps=8, grad_accum=2, checkpoint_every=16, seed=1),
        rm=TrainConfig(steps=12, lr=3e-4, warmup_steps=2, checkpoint_every=4, seed=2),
        rl=RLConfig(steps=8, prompts_per_step=2, group_size=4, max_new_tokens=224, lr=5e-5, epochs=1,
                    kl_coef=0.05, temperature=0.8, top_p=0.95, checkpoint_every=1, seed=3),
        sft2=TrainConfig(steps=10, lr=2e-4, warmup_steps=1, checkpoint_every=5, seed=4),
        qat=TrainConfig(steps=60, lr=1e-4, warmup_steps=2, checkpoint_every=10, seed=5),
        evaluation=EvalConfig(per_kind=4, garak=24, max_new_tokens=256),
        lora_rank=8, lora_alpha=16.0, variants=2, seq_len=384, sft_batch=2, rm_batch=4,
        rejection_prompts=24, rejection_samples=2, refuse_decision_weight=6.0, escalate_weight=3.0),
    # End to end on a tiny random model in about a minute: every stage runs, numbers mean nothing.
    "ci-tiny": Recipe(
        name="ci-tiny", base=None,
        sft=TrainConfig(steps=12, lr=5e-3, warmup_steps=2, checkpoint_every=5),
        rm=TrainConfig(steps=4, lr=3e-3, checkpoint_every=5),
        rl=RLConfig(steps=2, prompts_per_step=1, group_size=2, max_new_tokens=12, lr=1e-3, epochs=1),
        sft2=TrainConfig(steps=2, lr=1e-3),
        qat=TrainConfig(steps=3, lr=1e-3),
        evaluation=EvalConfig(per_kind=1, garak=2, max_new_tokens=16, ppl_window=128),
        lora_rank=4, lora_alpha=8.0, variants=1, seq_len=384, sft_batch=2, rm_batch=2,
        rl_algorithms=("grpo", "ppo"), rejection_prompts=2, rejection_samples=2, threads=1,
        escalation_openings=("crisis",)),
}


def _tiny_base(out: Path) -> Path:
    from model_core.train.domain import DATA_DIR
    from model_core.train.tiny import build_tiny_checkpoint

    dest = out / "tiny-base"
    if not (dest / "model.safetensors").is_file():
        texts = [p.read_text(encoding="utf-8") for p in sorted(DATA_DIR.glob("*"))]
        for pack in load_packs().values():
            texts += [pack.disclaimer, pack.header, *pack.refusals.values(), *pack.escalations.values()]
        build_tiny_checkpoint(dest, texts, vocab_size=400)
    return dest


def resolve_base(recipe: Recipe, out: Path) -> Path:
    if recipe.base is None:
        return _tiny_base(out)
    base = Path(recipe.base)
    if base == BUNDLED and not (base / "model.safetensors").is_file():
        from model_core.convert import prepare_bundled

        prepare_bundled(base)
    return base


class Run:
    """One recipe run in `out`: progress bookkeeping, the policy and what stages share."""

    def __init__(self, recipe: Recipe, out: Path, progress: bool) -> None:
        self.recipe, self.out, self.progress = recipe, Path(out), progress
        self.out.mkdir(parents=True, exist_ok=True)
        self.state = self.out / "state"
        self.record_path = self.out / "progress.json"
        self.record: dict[str, Any] = json.loads(self.record_path.read_text()) if self.record_path.is_file() else {}
        self.base_dir = resolve_base(recipe, self.out)
        ckpt = load_checkpoint(self.base_dir, progress=progress)
        self.config, self.tokenizer, self.policy = ckpt.config, ckpt.tokenizer, ckpt.model
        apply_lora(self.policy, recipe.lora_rank, recipe.lora_alpha)
        self.renderer = ChatRenderer(self.tokenizer)
        self.pad = pad_token_id(self.tokenizer)
        eos = [self.tokenizer.eos_token_id, *self.config.eos_token_ids]
        self.stop_ids = list(dict.fromkeys(t for t in eos if t is not None))
        self.packs = load_packs()
        examples = load_domain_examples(self.packs, variants=recipe.variants, escalate_weight=recipe.escalate_weight)
        self.train_examples, self.heldout_examples = split_heldout(examples)
        # Decision-only examples train the opening decision; RL, rejection sampling and preference
        # pairs need whole replies, so they read `train_examples` alone.
        self.decision_examples = (load_decision_examples(self.packs, refuse_weight=recipe.refuse_decision_weight)
                                  if recipe.decisions else [])
        # Openings are built from the training split only, so no held-out prompt is trained on.
        self.opening_examples = (escalation_openings(self.train_examples, self.packs, recipe.escalation_openings)
                                 if recipe.escalation_openings else [])
        self.decision_examples += self.opening_examples
        self.packed = pack_examples(self.renderer, self.train_examples + self.decision_examples, recipe.seq_len)
        self.heldout_packed = pack_examples(self.renderer, self.heldout_examples, recipe.seq_len)
        last = next((s for s in reversed(STAGE_ORDER) if s in self.record and self.adapter(s).is_file()), None)
        if last:
            load_adapter_weights(self.policy, self.adapter(last))

    def adapter(self, stage: str) -> Path:
        return self.out / "adapters" / f"{stage}.safetensors"

    def finish(self, stage: str, info: dict[str, Any], save: bool = True) -> None:
        if save:
            save_adapter(self.policy, self.adapter(stage), {"stage": stage, "recipe": self.recipe.name})
        self.record[stage] = info
        self.record_path.write_text(json.dumps(self.record, indent=2) + "\n")

    def curve(self, stage: str, losses: list[float], **extra: list[float]) -> None:
        save_loss_curve({stage: losses, **extra}, self.out / f"loss_{stage}.png", title=f"{self.recipe.name}: {stage}")


def stage_sft(run: Run) -> dict[str, Any]:
    r = run.recipe
    before = packed_loss(run.policy, run.heldout_packed)
    result = sft_train(run.policy, run.packed, r.sft, batch_size=r.sft_batch, state_dir=run.state, name="sft",
                       progress=run.progress)
    run.curve("sft", result.losses)
    return {"examples": len(run.train_examples),
            "decision_examples": len(run.decision_examples) - len(run.opening_examples),
            "opening_examples": len(run.opening_examples),
            "heldout_examples": len(run.heldout_examples),
            "packed_rows": len(run.packed), "seq_len": r.seq_len, "steps": r.sft.steps,
            "loss_first": result.losses[0], "loss_last": result.losses[-1],
            "heldout_loss_before": before, "heldout_loss_after": packed_loss(run.policy, run.heldout_packed)}


def _reward_model(run: Run) -> RewardModel:
    rm = RewardModel(copy.deepcopy(run.policy), run.pad)
    state = run.state / "reward.pt"
    if state.is_file():
        saved = torch.load(state, map_location="cpu", weights_only=False)["params"]
        params = dict(rm.named_parameters())
        with torch.no_grad():
            for key, value in saved.items():
                params[key.removeprefix("model.")].copy_(value)
    return rm


def stage_reward(run: Run) -> dict[str, Any]:
    r = run.recipe
    train = preference_pairs(run.renderer, run.train_examples, run.packs)
    held = preference_pairs(run.renderer, run.heldout_examples, run.packs)
    rm = _reward_model(run)
    result = train_reward_model(rm, train, r.rm, batch_size=r.rm_batch, state_dir=run.state, progress=run.progress)
    run.curve("reward", result.losses)
    return {"pairs_train": len(train), "pairs_heldout": len(held), "steps": r.rm.steps,
            "loss_first": result.losses[0], "loss_last": result.losses[-1], "heldout_accuracy": pair_accuracy(rm, held)}


def _reward_fn(run: Run, rm: RewardModel | None):
    opens = run.renderer.prompt_opens_reasoning

    def reward(meta: dict[str, Any], ids: list[int], text: str) -> float:
        score = rule_reward(meta, "<think>\n" + text if opens else text)
        if rm is not None:
            score += run.recipe.rm_weight * math.tanh(rm.score([meta["prompt_ids"] + ids])[0])
        return score
    return reward


def stage_rl(run: Run, algorithm: str) -> dict[str, Any]:
    r = run.recipe
    reference = copy.deepcopy(run.policy)
    rm = _reward_model(run) if "reward" in run.record else None
    prompts = rl_prompts(run.renderer, run.train_examples, run.packs)
    kwargs = dict(pad_id=run.pad, stop_ids=run.stop_ids, state_dir=run.state, progress=run.progress)
    if algorithm == "grpo":
        result = grpo_train(run.policy, reference, run.tokenizer, prompts, _reward_fn(run, rm), r.rl, **kwargs)
    else:
        value = ValueHead(run.config.hidden_size)
        result = ppo_train(run.policy, value, reference, run.tokenizer, prompts, _reward_fn(run, rm), r.rl, **kwargs)
    rewards = result.extras.get("reward", [])
    run.curve(algorithm, result.losses, reward=rewards)
    return {"prompts": len(prompts), "steps": r.rl.steps, "group_size": r.rl.group_size,
            "reward_first": rewards[0], "reward_last": rewards[-1], "reward_mean_last3": sum(rewards[-3:]) / 3}


def stage_rejection(run: Run) -> dict[str, Any]:
    r = run.recipe
    source = run.train_examples[:: max(len(run.train_examples) // r.rejection_prompts, 1)][:r.rejection_prompts]
    prompts = rl_prompts(run.renderer, source, run.packs)
    opens = run.renderer.prompt_opens_reasoning
    kept = rejection_sample(run.policy, run.renderer, prompts, source,
                            lambda meta, text: rule_reward(meta, "<think>\n" + text if opens else text) >= 1.0,
                            samples=r.rejection_samples, max_new_tokens=r.rl.max_new_tokens, stop_ids=run.stop_ids)
    mixed = kept + run.train_examples + run.decision_examples
    packed = pack_examples(run.renderer, mixed, r.seq_len)
    result = sft_train(run.policy, packed, r.sft2, batch_size=r.sft_batch, state_dir=run.state, name="sft2",
                       progress=run.progress)
    run.curve("rejection_sft", result.losses)
    return {"sampled_prompts": len(prompts), "accepted": len(kept), "sft_examples": len(mixed),
            "steps": r.sft2.steps, "loss_last": result.losses[-1]}


def stage_twin(run: Run) -> dict[str, Any]:
    """The QAT stage without fake quantisation (same config, so the same seed and batches)."""
    r = run.recipe
    result = sft_train(run.policy, run.packed, r.qat, batch_size=r.sft_batch, state_dir=run.state, name="twin",
                       progress=run.progress)
    run.curve("twin", result.losses)
    save_adapter(run.policy, run.adapter("twin"), {"stage": "twin", "recipe": r.name})
    load_adapter_weights(run.policy, run.adapter("rejection"))  # QAT starts where the twin did
    return {"steps": r.qat.steps, "loss_first": result.losses[0], "loss_last": result.losses[-1]}


def stage_qat(run: Run) -> dict[str, Any]:
    r = run.recipe
    load_adapter_weights(run.policy, run.adapter("rejection"))
    enable_qat(run.policy)
    try:
        result = sft_train(run.policy, run.packed, r.qat, batch_size=r.sft_batch, state_dir=run.state, name="qat",
                           progress=run.progress)
    finally:
        disable_qat(run.policy)
    run.curve("qat", result.losses)
    return {"steps": r.qat.steps, "loss_first": result.losses[0], "loss_last": result.losses[-1]}


STAGE_ORDER = ("sft", "reward", "grpo", "ppo", "rejection", "qat")


def run_recipe(recipe: Recipe, out: Path, *, progress: bool = True, evaluate: bool = True,
               overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or resume) every stage; writes `<out>/adapter.safetensors`, `card.json` and `CARD.md`."""
    if overrides:
        recipe = replace(recipe, **overrides)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    started = time.perf_counter()
    run = Run(recipe, out, progress)
    stages = [("sft", stage_sft), ("reward", stage_reward),
              *[(a, lambda run, a=a: stage_rl(run, a)) for a in recipe.rl_algorithms],
              ("rejection", stage_rejection), ("twin", stage_twin), ("qat", stage_qat)]
    for name, fn in stages:
        if name in run.record:
            continue
        t0 = time.perf_counter()
        info = fn(run)
        info["seconds"] = round(time.perf_counter() - t0, 1)
        run.finish(name, info, save=name not in ("reward", "twin"))
    final = save_adapter(run.policy, run.out / "adapter.safetensors",
                         {"recipe": recipe.name, "base": str(run.base_dir)})
    if evaluate and "eval" not in run.record:
        from model_core.train.evaluate import evaluate_checkpoints

        t0 = time.perf_counter()
        # "tuned (no QAT)" is the QAT stage's float twin: its int8 gap is post-training int8's.
        info = evaluate_checkpoints(run.base_dir, {"tuned (no QAT)": run.adapter("twin"), "tuned": final},
                                    recipe.evaluation, run.out / "RESULTS.md", progress=progress,
                                    generate_for=("base", "tuned"), heldout=run.heldout_packed,
                                    float_reference="tuned (no QAT)")
        info["seconds"] = round(time.perf_counter() - t0, 1)
        run.finish("eval", info, save=False)
    from model_core.train.evaluate import write_card

    return write_card(run.out, recipe=asdict(recipe), record=run.record, adapter=final, base=run.base_dir,
                      seconds=time.perf_counter() - started)

