"""Per-attribute auxiliary supervision: one linear classifier per annotated attribute over the shared embedding.

SDM only learns what separates the identities that meet in a batch; naming every attribute (glasses, logo,
shoe type) on both the image and the full-text embedding makes the small ones part of the shared space.
The vocabulary comes from the records' `attributes` objects, so any attribute-annotated data set works. An
attribute an image does not show (occluded, or a colour under an infrared camera) is left out of its record and
is not supervised for that sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from torch import Tensor, nn

from ireid.core.attribute_labels import attribute_labels, attribute_loss
from ireid.core.records import Record, attribute_values
from ireid.retriever.losses import make_id_classifier


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
        self.vocabulary = {name: list(values) for name, values in vocabulary.items()}
        self.names = tuple(vocabulary)
        self.heads = nn.ModuleList(make_id_classifier(dim, len(vocabulary[name])) for name in self.names)

    def labels(self, attributes: Sequence[Mapping[str, str]], keys: Sequence[str]) -> Tensor:
        """[B, A] class indices of each sample's attribute values, IGNORE where the sample does not annotate one.

        A value outside the vocabulary is an error naming its sample.
        """
        return attribute_labels(self.vocabulary, attributes, keys)

    def loss(self, feats: Tensor, labels: Tensor) -> Tensor:
        """mean over attributes a of CE(W_a · feats, labels[:, a]), each over the samples that annotate a."""
        return attribute_loss([head(feats) for head in self.heads], labels)
