"""`expected-gain`: the non-learned reference a learned questioner has to beat.

Asks about the attribute the expected-gain rule (`ireid.core.expected_gain`) chooses from what a deployed system
has: the current ranking, the gallery images' embeddings and the retriever's text encoder, never the gallery's
annotations nor the target. `expected-gain:reader` is the same rule whose candidates' answers are read off their
images by an attribute net (`ireid.core.attribute_net`, trained on the training split's annotations): eyes trained
to name attributes, where the retriever's were trained to match descriptions. `expected-gain:annotated` (uses
ground truth) reads them from the gallery's annotations: perfect eyes. Side by side the three tell how much of the
gap to the oracle is perception and how much is the rule itself.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ireid.core.attribute_net import AttributeNet
from ireid.core.expected_gain import ExpectedGainRule
from ireid.core.gallery import Gallery
from ireid.core.images import ImageSource
from ireid.core.rounds import RoundContext
from ireid.core.vocabulary.asking import gender_of
from ireid.core.vocabulary.attributes import ATTRIBUTES
from ireid.core.vocabulary.templates import descriptive_question


class ExpectedGain:
    """The uncovered attribute with the largest expected rank improvement over the current candidates, by `rule`
    (`reader`: an attribute net file whose readings of `images` are their answers; `rule.annotated`: their answers
    read from the gallery's annotations, which makes it a ground-truth reference)."""

    uses_ground_truth = False

    def __init__(
        self, rule: ExpectedGainRule | None = None, reader: str | None = None, images: ImageSource | None = None
    ):
        self.rule = rule or ExpectedGainRule()
        annotated = self.rule.annotated
        if reader is not None and (annotated or images is None):
            raise ValueError("expected-gain reads with an attribute net only without annotations and given images")
        self.net = None if reader is None else AttributeNet.load(reader)
        self.images = images
        self.read: tuple[Gallery, dict[str, Tensor]] | None = None  # the gallery last read, and its readings
        self.uses_ground_truth = annotated
        self.name = "expected-gain:annotated" if annotated else "expected-gain:reader" if reader else "expected-gain"

    def eyes(self, ctx: RoundContext) -> dict[str, Tensor] | None:
        """The attribute net's readings of the gallery's images, once per gallery."""
        if self.net is None or self.images is None:
            return None
        if self.read is not None and self.read[0] is not ctx.gallery and self.read[0].keys == ctx.gallery.keys:
            self.read = (ctx.gallery, self.read[1])  # the same images in another gallery object
        if self.read is None or self.read[0] is not ctx.gallery:
            keys = ctx.gallery.keys
            vocabulary = {name: spec.values for name, spec in ATTRIBUTES.items()}
            chunks = [self.net.eyes(self.images.load(list(keys[s : s + 1024])), vocabulary)
                      for s in range(0, len(keys), 1024)]  # fmt: skip
            readings = {name: torch.cat([c[name] for c in chunks]) for name in chunks[0]} if chunks else {}
            self.read = (ctx.gallery, readings)
        return self.read[1]

    def ask(self, ctx: RoundContext) -> list[str | None]:
        return [
            None if attribute is None else descriptive_question(attribute, gender_of(dialogue))
            for attribute, dialogue in zip(self.rule.choose(ctx, self.eyes(ctx)), ctx.dialogues, strict=True)
        ]
