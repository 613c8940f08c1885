"""The trained input classifier: P(benign | harmful | injection | offscope) from MiniLM embeddings.

Weights (`data/classifier.npz`, ~50 KB: a weight matrix, biases and the decision threshold, or,
from `--mlp`, a GELU hidden layer before them, float16; plus the nearest-example reference set below)
come from `python -m apps.safety.train_classifier`, which picks the thresholds on out-of-fold scores
of its own corpus, never on the evaluation sets. The shipped head reads MiniLM with its top two layers
fine-tuned for this task (`data/classifier_encoder.safetensors`, float16, an `embeddings.Branch`; see
`apps.safety.tune_encoder`): the four shared layers run once per message, then the frozen top (the
nearest signal and the pack scope keep reading it) and the tuned top. A message is judged on every view of it that
`apps.safety.deobfuscate.views` produces (decoded payloads, present-tense rewrites, the paragraphs of
a long wrapper); the most suspicious view decides. When 1 - P(benign) passes the threshold the
finding names the likelier bad class: `harmful` and `injection` block, `offscope` (questions about
the assistant's feelings, fiction presented as fact, topics outside the pack's domain) is a refusal
with the scope text, except for a short follow-up (`is_follow_up`) whose scope is the conversation's.
A second signal, the nearest authored example (`apps.safety.nearest`), blocks a view that is close
to one of the corpus's harmful cores and clearly closer to it than to any benign core, with thresholds
chosen with the head's on the same out-of-fold data; it catches paraphrases of authored harm the
linear head scores just under its threshold. A missing weights file, or one without the nearest
signal's fields, raises, and the pipeline fails closed.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from apps.safety import nearest
from apps.safety.findings import Finding

LABELS = ("benign", "harmful", "injection", "offscope")
WEIGHTS_PATH = Path(__file__).resolve().parent / "data" / "classifier.npz"
DEFAULT_THRESHOLD = 0.7
REFUSE = "refuse"
MIN_WORDS_FOR_SCOPE = 6  # shorter follow-ups are never refused as off-scope (harm still blocks them)

# Openers and back-references of a message that continues the conversation rather than starting one.
_FOLLOW_UP = re.compile(
    r"^\W*(?:and|or|but|so|also|then|plus|ok(?:ay)?|yes|yeah|yep|no|nope|sure|thanks?|thank you|great|"
    r"fine|right|cool|got it|i see|hm+|what about|how about|what if|same|really|why|how come|continue|"
    r"go on|more|again|sorry|wait|hello|hi|hey|good (?:morning|afternoon|evening))\b"
    r"|\b(?:it|its|that|this|those|these|them|they|there|same|instead|too|either|else|other one|"
    r"the first|the second|the last|another|one)\b",
    re.IGNORECASE)


class Weights(NamedTuple):
    """A classifier head: optional hidden layer (GELU), output layer, block threshold."""

    hidden_weight: np.ndarray | None  # (hidden, 384), or None for the linear model
    hidden_bias: np.ndarray | None    # (hidden,)
    weight: np.ndarray                # (len(LABELS), hidden or 384)
    bias: np.ndarray                  # (len(LABELS),)
    threshold: float
    nearest: nearest.Nearest | None = None  # the nearest-example signal; None in a head-only file
    branch: Any = None  # `embeddings.Branch`: fine-tuned top encoder layers the head reads, or None


_WEIGHTS: Weights | None = None
_LOCK = threading.Lock()


def load_weights(path: Path) -> Weights:
    """The head stored at `path` (float16 arrays are widened to float32), with the nearest-example
    signal when the file has it (a file with only some of its fields raises)."""
    data = np.load(path)

    def array(name: str) -> np.ndarray | None:
        return data[name].astype(np.float32) if name in data.files else None

    weight, bias = array("weight"), array("bias")
    if weight is None or bias is None:
        raise ValueError(f"{path} has no output layer (`weight`, `bias`)")
    threshold = float(data["threshold"]) if "threshold" in data.files else DEFAULT_THRESHOLD
    branch = None
    if "branch_first_layer" in data.files:
        branch = load_branch(branch_path(path), int(data["branch_first_layer"]))
    return Weights(array("hidden_weight"), array("hidden_bias"), weight, bias, threshold,
                   nearest.from_npz(data, path), branch)


def branch_path(weights_path: Path) -> Path:
    """Where the fine-tuned encoder layers of a head stored at `weights_path` live."""
    return weights_path.with_name(f"{weights_path.stem}_encoder.safetensors")


def load_branch(path: Path, first_layer: int) -> Any:
    """The fine-tuned top layers (`embeddings.Branch`) stored at `path`; a missing file raises."""
    from safetensors.torch import load_file

    from apps.safety.embeddings import Branch, get_model
    from apps.safety.tune_encoder import merge_adapters

    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run `python -m apps.safety.train_classifier`")
    model = get_model()
    return Branch(merge_adapters(model.w, load_file(str(path)), first_layer), first_layer, model.layers)


def features_of(texts: list[str], weights: Weights) -> tuple[np.ndarray, np.ndarray]:
    """(base, head) features of `texts`: the sentence embeddings the nearest signal and the pack scope
    use, and those the head reads (the fine-tuned branch's when the head has one, else the same)."""
    from apps.safety.embeddings import embed_branched_cached, embed_cached

    if weights.branch is None:
        base = embed_cached(texts).numpy()
        return base, base
    base_t, top_t = embed_branched_cached(texts, weights.branch)
    return base_t.numpy(), top_t.numpy()


def _weights() -> Weights:
    global _WEIGHTS
    if _WEIGHTS is None:
        with _LOCK:
            if _WEIGHTS is None:
                if not WEIGHTS_PATH.exists():
                    raise FileNotFoundError(
                        f"{WEIGHTS_PATH} is missing; run `python -m apps.safety.train_classifier`"
                    )
                weights = load_weights(WEIGHTS_PATH)
                if weights.nearest is None:
                    raise ValueError(f"{WEIGHTS_PATH} has no nearest-example fields; retrain the classifier")
                _WEIGHTS = weights
    return _WEIGHTS


def threshold() -> float:
    """The block threshold on 1 - P(benign) stored with the weights."""
    return _weights().threshold


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh form (what the trainer uses: `torch.nn.GELU(approximate="tanh")`)."""
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))


def softmax_scores(features: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Softmax of a linear layer over `features`, row by row."""
    logits = features @ weight.T + bias
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def head_scores(features: np.ndarray, weights: Weights) -> np.ndarray:
    """Class probabilities of `features` (n, 384) under `weights`, linear or MLP."""
    if weights.hidden_weight is not None and weights.hidden_bias is not None:
        features = gelu(features @ weights.hidden_weight.T + weights.hidden_bias)
    return softmax_scores(features, weights.weight, weights.bias)


def probabilities(texts: list[str]) -> np.ndarray:
    """(len(texts), len(LABELS)) class probabilities in `LABELS` order."""
    weights = _weights()
    return head_scores(features_of(texts, weights)[1], weights)


def _finding(probs: np.ndarray, view: str, near: bool, s_h: float) -> Finding | None:
    kind = None if view == "original" else view
    bad = float(1.0 - probs[0])
    if bad < threshold():
        # Under the head's threshold, the nearest-example check may still block the view.
        return Finding("classifier.nearest", "block", score=s_h, kind=kind) if near else None
    label = LABELS[1 + int(np.argmax(probs[1:]))]
    if label == "offscope" and near:
        label = "nearest"  # close to authored harm: a block, not the scope refusal
    action = REFUSE if label == "offscope" else "block"
    return Finding(f"classifier.{label}", action, score=bad, kind=kind)


def nearest_signal(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(blocked, s_h, s_b) of the nearest-example check for every row of `features` (n, 384)."""
    near = _weights().nearest
    assert near is not None  # `_weights` refuses a file without it
    s_h, s_b = nearest.similarities(features, near)
    return nearest.blocked(s_h, s_b, near.min_similarity, near.min_margin), s_h, s_b


def classifier_findings(text: str) -> list[Finding]:
    """At most one finding: the most severe class over all views of `text` (block beats refuse)."""
    from apps.safety.deobfuscate import views

    named = views(text)
    weights = _weights()
    base, head_features = features_of([view for _, view in named], weights)
    probs = head_scores(head_features, weights)
    near, s_h, _ = nearest_signal(base)
    found = [f for (name, _), row, hit, sim in zip(named, probs, near, s_h, strict=True)
             if (f := _finding(row, name, bool(hit), float(sim)))]
    if not found:
        return []
    blocks = [f for f in found if f.action == "block"]
    if not blocks and is_follow_up(text):
        # "And APY?", "And for my daughter?": a short follow-up's scope is the conversation's, which
        # this message alone does not show; refusing it would break ordinary multi-turn chat.
        return []
    return [max(blocks or found, key=lambda f: f.score)]


def is_follow_up(text: str) -> bool:
    """A short message that leans on the turn before it: it opens with a connective or an
    acknowledgement ("and", "what about", "ok", "thanks"), points back ("that", "it", "the same"),
    or is a bare one- or two-word reply. "Are ghosts real?" or "Tell me a joke." stand on their own,
    so they are judged on their own; a bank customer's follow-ups ("And APY?", "Is that taxed?",
    "What about my wife?") are not."""
    words = text.split()
    if len(words) >= MIN_WORDS_FOR_SCOPE:
        return False
    return len(words) <= 2 or bool(_FOLLOW_UP.search(text))
