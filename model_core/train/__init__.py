"""Verity's R1 training pipeline: SFT with readable reasoning, reward model, GRPO/PPO, int8 QAT.

Stages (see recipe.py): domain SFT with LoRA on every block linear (loss on the assistant's tokens
only), a Bradley–Terry reward model, reinforcement learning with rule rewards plus the reward model
(GRPO by default, PPO available), rejection sampling back into SFT, and quantisation-aware training
with fake int8 weights. `python -m model_core.train train --recipe r1-domain` runs it end to end;
`python -m model_core.train eval` measures base against tuned. Pure model_core: torch, safetensors,
tokenizers, PyYAML and the standard library (matplotlib for the loss curves when installed).
"""
