"""Per-attribute auxiliary supervision: one linear classifier per annotated attribute over the shared embedding.

SDM only learns what separates the identities that meet in a batch; naming every attribute (glasses, logo,
shoe type) on both the image and the full-text embedding makes the small ones part of the shared space.
The vocabulary comes from the records' `attributes` objects, so any attribute-annotated data set works. An
attribute an image does not show (occluded, or a colour under an infrared camera) is left out of its record and
is not supervised for that sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ireid.core.records import Record, attribute_values
from ireid.retriever.losses import make_id_classifier

IGNORE = -100


def attribute_vocabulary(records: Iterable[Record], where: str) -> dict[str, list[str]]:
    """Every attribute name with its sorted values, as annotated in `records` (`where` names them in errors)."""
    vocabulary = attribute_values(record.attributes for record in records)
    if not vocabulary:
        raise ValueError(f"{where}: the 'attr' loss needs records with an 'attributes' object, and none has one")
    return vocabulary


class AttributeHeads(nn.Module):
    """One linear classifier per attribute; `loss` is the cross-entropy averaged over attributes."""

    def __init__(self, dim: int, vocabulary: Mapping[str, Sequence[str]]):
        super().__init__()
        if not vocabulary or any(not values for values in vocabulary.values()):
            raise ValueError(f"attribute vocabulary must name at least one attribute with values, got {vocabulary}")
        self.names = tuple(vocabulary)
        self.value_index = {name: {value: i for i, value in enumerate(vocabulary[name])} for name in self.names}
        self.heads = nn.ModuleList(make_id_classifier(dim, len(vocabulary[name])) for name in self.names)

    def labels(self, attributes: Sequence[Mapping[str, str]], keys: Sequence[str]) -> Tensor:
        """[B, A] class indices of each sample's attribute values, IGNORE where the sample does not annotate one.

        A value outside the vocabulary is an error naming its sample.
        """
        rows = []
        for sample, key in zip(attributes, keys, strict=True):
            row = []
            for name in self.names:
                if name not in sample:
                    row.append(IGNORE)
                    continue
                index = self.value_index[name].get(sample[name])
                if index is None:
                    value = sample[name]
                    raise ValueError(f"record {key!r}: attributes[{name!r}] = {value!r} is not in the vocabulary")
                row.append(index)
            rows.append(row)
        return torch.tensor(rows, dtype=torch.long).view(len(rows), len(self.names))

    def loss(self, feats: Tensor, labels: Tensor) -> Tensor:
        """mean over attributes a of CE(W_a · feats, labels[:, a]), each over the samples that annotate a."""
        terms = [
            F.cross_entropy(head(feats), labels[:, a], ignore_index=IGNORE)
            for a, head in enumerate(self.heads)
            if (labels[:, a] != IGNORE).any()
        ]
        return torch.stack(terms).mean() if terms else feats.sum() * 0.0
