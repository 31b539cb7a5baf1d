"""An investigator over the tiny world's test split, with an untrained tiny retriever and a cheap strategy."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ireid.app.investigator.gallery import split_gallery
from ireid.app.investigator.server import create_app
from ireid.app.investigator.session import Investigator, InvestigatorSettings
from ireid.core.expected_gain import ExpectedGainRule
from ireid.interactive.strategies.expected_gain import ExpectedGain
from ireid.retriever.inference import ModuleRetriever


@pytest.fixture(scope="session")
def retriever_ckpt(tower_file: Path) -> Path:
    return tower_file.parent / "retriever.ckpt"


@pytest.fixture(scope="session")
def retriever(retriever_ckpt: Path) -> ModuleRetriever:
    return ModuleRetriever.from_checkpoint(retriever_ckpt)


@pytest.fixture
def investigator(tiny_world: Path, retriever: ModuleRetriever) -> Investigator:
    gallery = split_gallery(tiny_world, "test", retriever)
    return Investigator(
        gallery,
        retriever,
        ExpectedGain(ExpectedGainRule(pool=8)),
        InvestigatorSettings(top_k=6, look_alike_cosine=0.99),
    )


@pytest.fixture
def client(investigator: Investigator) -> TestClient:
    return TestClient(create_app(investigator))
