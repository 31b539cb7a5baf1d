"""Question strategies over the synthetic world's attribute vocabulary: `simirv` and `plugir`.

Both ask descriptive questions about attributes the dialogue has not covered yet (what the current text
states, or a question already asked about). SimIRV (Liang & Albanie, 2023) asks about the objects of the
initial description first, then the rest in a fixed order; it never looks at the gallery. PlugIR (Lee et al.,
2024) looks at the retrieved candidates: it clusters the top of the ranking, reads each cluster
representative's caption (the gallery records' fine descriptions stand in for a captioner) and asks about the
uncovered attribute whose values split the representatives most evenly (highest entropy), a stand-in for its
"most informative question" step. The vocabulary is the synthetic world's, so these run on synthetic data.
"""

from __future__ import annotations

import math
from collections import Counter

from ireid.core.rounds import RoundContext
from ireid.core.vocabulary.asking import ASKABLE, gender_of, uncovered_attributes
from ireid.core.vocabulary.parse import covered_attributes, mentioned_attributes, parse_description
from ireid.core.vocabulary.templates import descriptive_question
from ireid.interactive.candidates import CandidateMethod, select_candidates, shrinking_pool

# Attributes that describe the same object, asked together once the initial description names one of them.
OBJECTS: tuple[tuple[str, ...], ...] = (
    ("upper_type", "upper_colour", "upper_pattern", "upper_logo"),
    ("lower_type", "lower_colour"),
    ("hair_colour", "hair_length"),
    ("shoes_type", "shoes_colour"),
)


class SimIRV:
    """Objects named in the initial description first (their other attributes), then every other attribute."""

    name = "simirv"
    uses_ground_truth = False

    def order(self, initial: str) -> list[str]:
        named = mentioned_attributes(initial)
        first = [a for group in OBJECTS if named & set(group) for a in group]
        return first + [a for a in ASKABLE if a not in first]

    def ask(self, ctx: RoundContext) -> list[str | None]:
        questions: list[str | None] = []
        for dialogue in ctx.dialogues:
            done = covered_attributes(ctx.text_of(dialogue), dialogue.asked)
            todo = [a for a in self.order(dialogue.initial) if a not in done]
            questions.append(descriptive_question(todo[0], gender_of(dialogue)) if todo else None)
        return questions


def value_entropy(values: list[str]) -> float:
    """Shannon entropy (nats) of the empirical distribution of `values`."""
    counts = Counter(values)
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


class PlugIR:
    """Cluster the top-N candidates, ask about the uncovered attribute that best splits the representatives."""

    name = "plugir"
    uses_ground_truth = True  # reads the candidates' annotated descriptions, standing in for a captioner

    def __init__(self, top_n: int = 500, clusters: int = 10, method: CandidateMethod = "k-means"):
        self.top_n, self.clusters, self.method = top_n, clusters, method

    def ask(self, ctx: RoundContext) -> list[str | None]:
        questions: list[str | None] = []
        pool = shrinking_pool(ctx.round, self.top_n, self.clusters)
        for i, dialogue in enumerate(ctx.dialogues):
            todo = uncovered_attributes(dialogue, ctx.text_of(dialogue))
            if not todo:
                questions.append(None)
                continue
            picks = select_candidates(
                self.method, ctx.scores[i], ctx.gallery.embeddings, self.clusters, pool, ctx.rng(i)
            )
            captions = [parse_description(ctx.gallery.records[j].fine_description) for j in picks]
            spread = {a: value_entropy([c.get(a, "?") for c in captions]) for a in todo}
            best = max(todo, key=lambda a: spread[a])  # max keeps the first of equals: vocabulary order
            questions.append(descriptive_question(best, gender_of(dialogue)))
        return questions
