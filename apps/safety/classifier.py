"""The trained input classifier: P(benign | harmful | injection) from a MiniLM sentence embedding.

Weights (`data/classifier.npz`, a few KB) come from `python -m apps.safety.train_classifier`. A
message is blocked when P(harmful) + P(injection) passes `BLOCK_THRESHOLD`. If the weights file is
missing the classifier raises, and the pipeline fails closed rather than silently skipping it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from apps.safety.findings import Finding

LABELS = ("benign", "harmful", "injection")
WEIGHTS_PATH = Path(__file__).resolve().parent / "data" / "classifier.npz"
BLOCK_THRESHOLD = 0.7

_WEIGHTS: tuple[np.ndarray, np.ndarray] | None = None
_LOCK = threading.Lock()


def _weights() -> tuple[np.ndarray, np.ndarray]:
    global _WEIGHTS
    if _WEIGHTS is None:
        with _LOCK:
            if _WEIGHTS is None:
                if not WEIGHTS_PATH.exists():
                    raise FileNotFoundError(
                        f"{WEIGHTS_PATH} is missing; run `python -m apps.safety.train_classifier`"
                    )
                data = np.load(WEIGHTS_PATH)
                _WEIGHTS = (data["weight"], data["bias"])
    return _WEIGHTS


def probabilities(texts: list[str]) -> np.ndarray:
    """(len(texts), 3) class probabilities in `LABELS` order."""
    from apps.safety.embeddings import embed

    weight, bias = _weights()
    logits = embed(texts).numpy() @ weight.T + bias
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def classifier_findings(text: str) -> list[Finding]:
    """A block finding named after the likelier bad class, when the message looks bad enough."""
    probs = probabilities([text])[0]
    bad = float(probs[1] + probs[2])
    if bad < BLOCK_THRESHOLD:
        return []
    label = LABELS[1] if probs[1] >= probs[2] else LABELS[2]
    return [Finding(f"classifier.{label}", "block", score=bad)]
