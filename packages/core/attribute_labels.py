"""Attribute supervision shared by every model that names attributes: the retriever's `attr` heads, the attribute
net and the visual witness's heads.

An annotation maps attribute names to values; an attribute an image does not show (occluded, a colour under an
infrared camera) is absent and is not supervised for it. Labels are value indices in a vocabulary's order, and the
loss is the cross-entropy of each attribute over the samples that annotate it, averaged over the attributes the
batch annotates, so a rare attribute weighs as much as a common one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE = -100  # a label no loss reads (the attribute is not annotated)


def attribute_labels(
    vocabulary: Mapping[str, Sequence[str]],
    attributes: Sequence[Mapping[str, str]],
    keys: Sequence[str] | None = None,
) -> Tensor:
    """[N, A] value indices per attribute of `vocabulary`, IGNORE where a sample does not annotate it.

    With `keys` (one per sample), a value outside the vocabulary is an error naming its sample; without, it is
    ignored like an absent one.
    """
    index = {name: {value: i for i, value in enumerate(values)} for name, values in vocabulary.items()}
    rows = []
    for n, sample in enumerate(attributes):
        row = []
        for name in vocabulary:
            label = index[name].get(sample[name], IGNORE) if name in sample else IGNORE
            if label == IGNORE and keys is not None and name in sample:
                raise ValueError(
                    f"record {keys[n]!r}: attributes[{name!r}] = {sample[name]!r} is not in the vocabulary"
                )
            row.append(label)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long).view(len(rows), len(vocabulary))


def attribute_loss(logits: Sequence[Tensor], labels: Tensor) -> Tensor:
    """mean over attributes a of CE(logits[a], labels[:, a]), each over the samples that annotate a; attributes no
    sample annotates are left out (0 with a gradient path when none is annotated)."""
    terms = [F.cross_entropy(scores, labels[:, a], ignore_index=IGNORE)
             for a, scores in enumerate(logits) if (labels[:, a] != IGNORE).any()]  # fmt: skip
    return torch.stack(terms).mean() if terms else sum(s.sum() for s in logits) * 0.0
