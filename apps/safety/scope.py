"""Pack scope: is a message about what this pack's assistant is for?

A bank's assistant answers money questions, a clinic's health questions, a law firm's legal ones; the
global classifier (`apps.safety.classifier`) only knows "finance, medical or legal" as a whole. Each pack
says what it covers in its `scope` section (data the domain experts govern, like the rest of the pack):
topics, a one-line summary and typical customer questions. They are embedded once per process with the
same MiniLM encoder as the classifier; a message is in scope when its nearest anchor is at least
`threshold` similar (cosine). Every view of the message that `apps.safety.deobfuscate.views` produces
counts (decoded payloads, present-tense rewrites, paragraphs of a long text), and the most in-scope one
decides: what the message asks for is judged, not its wrapping; harm is the classifier's business.
Questions about the conversation or the assistant itself (`GENERAL_ANCHORS`) are in scope everywhere.

Out of scope is a refusal with the pack's `refusal.scope` text, not a harm block. Short follow-ups
("And for my wife?", `classifier.is_follow_up`) are never refused: their scope is the conversation's.

The default threshold is the 1st percentile of leave-one-out similarities of the shipped packs'
examples (each example against its pack's other anchors): 0.299 for medical, 0.334 legal, 0.336 finance,
rounded down to 0.29, so about 1 in 100 of a pack's own kind of question could fall below it
(`scope_calibration` recomputes these; a test keeps the default at or below every shipped pack's figure).
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

from apps.safety.findings import Finding
from apps.safety.policy import PackPolicy

DEFAULT_THRESHOLD = 0.29
REFUSE = "refuse"
_LOCK = threading.Lock()

# In scope for every pack: the conversation itself and the assistant (built in, not pack data).
GENERAL_ANCHORS = (
    "What did I tell you earlier in this conversation?",
    "Can you summarise, shorten or rephrase your previous answer?",
    "Can you explain that again in simpler words with an example?",
    "Who are you, are you a human or an AI, and what can you help me with?",
    "Can I talk to a human advisor instead of the assistant?",
    "Hello, thank you for your help, goodbye.",
)


@lru_cache(maxsize=32)
def _anchor_matrix(anchors: tuple[str, ...]) -> np.ndarray:
    from apps.safety.embeddings import embed

    return embed(list(anchors)).numpy()


def anchor_matrix(anchors: tuple[str, ...]) -> np.ndarray:
    """(len(anchors), 384) unit vectors of a pack's anchors; built once per pack content and process."""
    with _LOCK:  # one build per pack even when many threads check their first message at once
        return _anchor_matrix(anchors)


def scope_score(texts: list[str], policy: PackPolicy) -> float:
    """The highest similarity between any of `texts` and any of the pack's anchors (1.0 without anchors)."""
    if not policy.scope_anchors or not texts:
        return 1.0
    from apps.safety.embeddings import embed_cached

    vectors = embed_cached(texts).numpy()
    return float((vectors @ anchor_matrix(policy.scope_anchors + GENERAL_ANCHORS).T).max())


def scope_check(text: str, policy: PackPolicy) -> list[Finding]:
    """A `scope.offtopic` refusal when no view of `text` comes near the pack's scope."""
    if not policy.scope_anchors:
        return []
    from apps.safety.classifier import is_follow_up
    from apps.safety.deobfuscate import views

    if is_follow_up(text):
        return []
    score = scope_score([view for _, view in views(text)], policy)
    threshold = DEFAULT_THRESHOLD if policy.scope_threshold is None else policy.scope_threshold
    if score >= threshold:
        return []
    return [Finding("scope.offtopic", REFUSE, score=round(1.0 - score, 4))]


def scope_calibration(policy: PackPolicy, percentiles: tuple[float, ...] = (1, 2, 5)) -> dict[float, float]:
    """Leave-one-out similarities of the pack's example questions (the anchors that are not topics or
    the summary) against its other anchors, at `percentiles`: where a threshold starts refusing the
    pack's own kind of question."""
    anchors = policy.scope_anchors
    examples = [i for i, a in enumerate(anchors) if not a.startswith("a question about ")]
    if not examples:
        return {}
    matrix = anchor_matrix(anchors)
    sims = matrix[examples] @ matrix.T
    for row, index in enumerate(examples):
        sims[row, index] = -1.0
    best = sims.max(axis=1)
    return {p: float(np.percentile(best, p)) for p in percentiles}
