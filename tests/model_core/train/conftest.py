"""Fixtures for the training tests: one tiny random checkpoint (2 layers, hidden 48, a few hundred
tokens of BPE vocabulary trained on the domain data) built once per session in well under a second."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_core.checkpoint import Checkpoint, load_checkpoint
from model_core.train.data import ChatRenderer
from model_core.train.domain import DATA_DIR
from model_core.train.packs import load_packs
from model_core.train.tiny import build_tiny_checkpoint


def corpus() -> list[str]:
    texts = [p.read_text(encoding="utf-8") for p in sorted(DATA_DIR.glob("*"))]
    for pack in load_packs().values():
        texts += [pack.disclaimer, pack.header, *pack.refusals.values(), *pack.escalations.values()]
    return texts


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and far faster than on two when the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", corpus(), vocab_size=400)


@pytest.fixture
def tiny(tiny_dir: Path) -> Checkpoint:
    torch.manual_seed(0)
    return load_checkpoint(tiny_dir, progress=False)


@pytest.fixture
def renderer(tiny: Checkpoint) -> ChatRenderer:
    return ChatRenderer(tiny.tokenizer)


@pytest.fixture(scope="session")
def packs():
    return load_packs()
