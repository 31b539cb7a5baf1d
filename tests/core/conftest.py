"""Fixtures shared by the factory tests."""

from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerBase

from ireid.core.tokenizer import train_bpe_tokenizer
from tests.core.test_factory import TEXTS


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> PreTrainedTokenizerBase:
    """A small data-set tokenizer trained on the factory tests' texts."""
    return train_bpe_tokenizer(TEXTS * 4, tmp_path_factory.mktemp("tok"), vocab_size=512)
