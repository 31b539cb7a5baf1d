"""The per-conversation loss average against a hand computation and the usual token mean; the Yes/No accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from ireid.chatreid.encoding import IGNORE_INDEX
from ireid.chatreid.module import ChatReIDModule, sample_mean_loss, yes_no_right


def test_each_conversation_weighs_the_same_whatever_its_answer_length():
    logits = torch.zeros(2, 5, 4)  # uniform predictions: every target token costs ln 4
    logits[0, 0, 1] = math.log(3.0)  # conversation 0's one target (token 1 at position 1) gets p = 3/6
    labels = torch.full((2, 5), IGNORE_INDEX)
    labels[0, 1] = 1
    labels[1, 1:] = torch.tensor([0, 1, 2, 3])
    expected = (-math.log(0.5) + math.log(4.0)) / 2  # not (ln 2 + 4 ln 4) / 5, the token mean
    assert float(sample_mean_loss(logits, labels)) == pytest.approx(expected)


def test_with_equal_answer_lengths_it_is_the_token_mean():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 7)
    labels = torch.full((3, 6), IGNORE_INDEX)
    labels[:, 3:] = torch.randint(0, 7, (3, 3))
    token_mean = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1))
    assert float(sample_mean_loss(logits, labels)) == pytest.approx(float(token_mean), rel=1e-6)


def test_an_unknown_average_is_refused():
    with pytest.raises(ValueError, match="loss_average"):
        ChatReIDModule(1, loss_average="batch")


def test_yes_no_accuracy_reads_the_first_answer_token_of_yes_no_conversations_only():
    yes, no = 5, 6
    logits = torch.zeros(4, 6, 8)
    labels = torch.full((4, 6), IGNORE_INDEX)
    labels[0, 3:5] = torch.tensor([yes, 1])  # answered Yes; predicted at position 2: Yes above No, right
    logits[0, 2, yes] = 2.0
    labels[1, 2:4] = torch.tensor([no, 1])  # answered No; predicted at position 1: Yes above No, wrong
    logits[1, 1, yes] = 1.0
    logits[1, 3, no] = 9.0  # a later position (the end token's) does not count
    labels[2, 1:4] = torch.tensor([2, yes, 1])  # a VQA answer with Yes inside: not a Yes/No conversation
    logits[3, 0, no] = 3.0  # no answer at all
    assert yes_no_right(logits, labels, (yes, no)) == (1, 2)
    assert yes_no_right(logits[2:], labels[2:], (yes, no)) == (0, 0)
