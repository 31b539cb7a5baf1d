"""LLaVA-ReID (§4.2): a multi-image questioner asks about the candidates a selector picked from the ranking.

Each round t the pool is the retriever's top ceil(budget / t); `num_select` images are chosen from it, by the
trained selector (which reads the dialogue embedding and the pool's image embeddings) or by one of the
training-free rules of Table 3 (top-k, k-means, uniform). The chosen images go to the questioner best-ranked
first: the first is shown as the candidate person, the others as similar persons.
"""

from __future__ import annotations

import torch

from ireid.core.images import ImageSource
from ireid.core.protocols import CandidateSelector, Questioner
from ireid.core.rounds import RoundContext, pool_size
from ireid.interactive.candidates import CANDIDATE_METHODS, select_candidates

SELECTOR = "selector"


class LlavaReID:
    """Questions from a `Questioner` shown `num_select` candidate images per dialogue."""

    uses_ground_truth = False

    def __init__(
        self,
        questioner: Questioner,
        images: ImageSource,
        selector: CandidateSelector | None = None,
        candidates: str = SELECTOR,
        num_select: int = 4,
        budget: int = 200,
        name: str = "llava-reid",
    ):
        if candidates not in (SELECTOR, *CANDIDATE_METHODS):
            known = ", ".join((SELECTOR, *CANDIDATE_METHODS))
            raise ValueError(f"unknown candidate method {candidates!r}; expected one of {known}")
        if candidates == SELECTOR and selector is None:
            raise ValueError("candidates='selector' needs a trained selector")
        self.questioner = questioner
        self.images = images
        self.selector = selector
        self.candidates = candidates
        self.num_select = num_select
        self.budget = budget
        self.name = name

    @torch.no_grad()
    def pick(self, ctx: RoundContext) -> list[list[int]]:
        """Gallery indices shown to the questioner, per dialogue, best-ranked first."""
        pool = min(pool_size(ctx.round, self.budget), len(ctx.gallery))
        if self.candidates != SELECTOR:
            return [
                select_candidates(
                    self.candidates, ctx.scores[i], ctx.gallery.embeddings, self.num_select, pool, ctx.rng(i, "pick")
                )  # type: ignore[arg-type]
                for i in range(len(ctx.dialogues))
            ]
        top = torch.topk(ctx.scores.float(), pool, dim=1).indices  # [B, K], rank order
        dialogue = ctx.retriever.encode_text([ctx.text_of(d) for d in ctx.dialogues]).float()
        candidates = ctx.gallery.embeddings[top]
        mask = torch.ones(top.shape, dtype=torch.bool)
        chosen = self.selector.select(dialogue, candidates, mask, min(self.num_select, pool))  # type: ignore[union-attr]
        picked = top.gather(1, chosen)
        order = ctx.scores.gather(1, picked).argsort(dim=1, descending=True)
        return picked.gather(1, order).tolist()

    def ask(self, ctx: RoundContext) -> list[str | None]:
        picks = self.pick(ctx)
        shown = [self.images.load([ctx.gallery.keys[j] for j in row]) for row in picks]
        return list(self.questioner.ask(ctx.dialogues, shown))
