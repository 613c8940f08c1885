"""Fixtures for the safety tests: a finance-like pack and its pipeline."""

from __future__ import annotations

import pytest

from apps.safety.pipeline import SafetyPipeline
from tests.apps.safety._support import FakePack, finance_pack


@pytest.fixture
def pack() -> FakePack:
    return finance_pack()


@pytest.fixture
def pipeline(pack: FakePack) -> SafetyPipeline:
    return SafetyPipeline.for_pack(pack)
