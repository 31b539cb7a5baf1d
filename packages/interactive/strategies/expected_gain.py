"""`expected-gain`: the non-learned reference a learned questioner has to beat.

Asks about the uncovered attribute whose answer is expected to lift the target most, judged only from what a
deployed system has: the current ranking, the gallery images' embeddings and the retriever's text encoder (never
the gallery's annotations, never the target). For each uncovered attribute and each of its values, the dialogue
text with that value's statement appended is encoded and scored against the whole gallery. The current top `pool`
candidates stand for the target, weighted by a posterior over them (a softmax of their scores); each candidate's
likely answer is a softmax over the attribute's values of its scores. The attribute with the largest expected fall
of the target's log-rank in the gallery is asked.

Two choices make it work, both measured: the ranks are the candidates' places in the whole gallery, not among
the pool (a question that lifts a candidate past people outside the pool is what helps); and the posterior is
flat enough to spread over many candidates (at round 0 the top candidate is the target about once in a hundred
searches, and a sharp posterior only protects the current leader). Like `simirv` and `plugir` it speaks the
pedestrian vocabulary (`ireid.core.vocabulary`), so it runs on data described in it.

`expected-gain:annotated` (uses ground truth) is the same rule with perfect eyes: each candidate's answer is the
value its gallery record annotates, not one guessed from the retriever's scores. It tells how much of the gap to
the oracle is perception and how much is the rule itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ireid.core.records import Record
from ireid.core.rounds import RoundContext
from ireid.core.vocabulary.asking import gender_of, uncovered_attributes
from ireid.core.vocabulary.attributes import ATTRIBUTES
from ireid.core.vocabulary.templates import TEMPLATES, descriptive_question, fields


def value_statements(attribute: str, gender: str | None) -> list[str]:
    """One statement per value of `attribute` (the first template), as a witness would answer the question."""
    template = TEMPLATES[attribute].statements[0]
    person = {"gender": gender} if gender else {}
    return [template.format(**fields(person, attribute, value)) for value in ATTRIBUTES[attribute].values]


def gallery_ranks(scores: Tensor, pool: Tensor) -> Tensor:
    """1-based places of the `pool` candidates in the whole gallery: scores [..., N] → [..., P]. Tied scores share
    the middle of their places (ties are common before an attribute is named, and a split of tied candidates must
    count as progress)."""
    ordered = scores.sort(dim=-1).values
    own = scores[..., pool].contiguous()
    up_to = torch.searchsorted(ordered, own, right=True)  # candidates scoring at most as high
    below = torch.searchsorted(ordered, own, right=False)
    higher = scores.shape[-1] - up_to
    tied = up_to - below - 1  # the candidate itself is among the equals
    return 1.0 + higher + 0.5 * tied


def expected_log_rank_gain(before: Tensor, after: Tensor, pool: Tensor, posterior: Tensor, answer: Tensor) -> Tensor:
    """Expected fall of log-rank in the gallery per question, over the `pool` candidates weighted by `posterior`.

    before [N]: current scores of the gallery; after [..., V, N]: its scores after each of a question's V answers
    (leading dimensions: several questions at once); pool [P]: the candidates that stand for the target;
    answer [..., V, P]: P(answer v | pool candidate j is the target), each column summing to 1 (an answer row of
    zeros, e.g. padding, counts for nothing). Returns [...].
    """
    rank_before = gallery_ranks(before, pool)  # [P]
    rank_after = gallery_ranks(after, pool)  # [..., V, P]: place of candidate j under answer v
    gain = rank_before.log() - rank_after.log()
    return (posterior * (answer * gain).sum(-2)).sum(-1)


def annotated_answers(attribute: str, records: Sequence[Record]) -> Tensor:
    """[V, P] each record's annotated value of `attribute` as a one-hot over its values; uniform where a record
    does not annotate it (or annotates a value outside the vocabulary)."""
    values = ATTRIBUTES[attribute].values
    answer = torch.full((len(values), len(records)), 1.0 / len(values))
    for j, record in enumerate(records):
        value = record.attributes.get(attribute)
        if value in values:
            answer[:, j] = 0.0
            answer[values.index(value), j] = 1.0
    return answer


class ExpectedGain:
    """The uncovered attribute with the largest expected rank improvement over the current candidates
    (`annotated`: their answers read from the gallery's annotations, which makes it a ground-truth reference)."""

    uses_ground_truth = False

    def __init__(
        self, pool: int = 200, temperature: float = 0.2, answer_temperature: float = 0.02, annotated: bool = False
    ):
        if pool < 2:
            raise ValueError(f"expected-gain needs a pool of at least 2 candidates, got {pool}")
        self.pool, self.temperature, self.answer_temperature = pool, temperature, answer_temperature
        self.annotated = self.uses_ground_truth = annotated
        self.name = "expected-gain:annotated" if annotated else "expected-gain"

    @torch.no_grad()
    def ask(self, ctx: RoundContext) -> list[str | None]:
        plans: list[tuple[int, list[str], list[int]]] = []  # (dialogue, attributes, values per attribute)
        texts: list[str] = []
        for i, dialogue in enumerate(ctx.dialogues):
            current = ctx.text_of(dialogue)
            todo = uncovered_attributes(dialogue, current)
            gender = gender_of(dialogue)
            counts = []
            for attribute in todo:
                statements = value_statements(attribute, gender)
                texts += [f"{current} {s}" for s in statements]
                counts.append(len(statements))
            plans.append((i, todo, counts))
        if not texts:
            return [None] * len(ctx.dialogues)
        encoded = torch.cat([ctx.retriever.encode_text(texts[s : s + 1024]) for s in range(0, len(texts), 1024)])
        images = ctx.gallery.embeddings.float()
        questions: list[str | None] = [None] * len(ctx.dialogues)
        offset = 0
        for i, todo, counts in plans:
            if not todo:
                continue
            before = ctx.scores[i].float()
            pool = torch.topk(before, min(self.pool, len(ctx.gallery))).indices
            posterior = torch.softmax(before[pool] / self.temperature, dim=0)
            # every question's answers at once, padded to the longest value list: [A, V, N]
            valid = torch.zeros(len(todo), max(counts), dtype=torch.bool)
            for k, count in enumerate(counts):
                valid[k, :count] = True
            after = torch.zeros(*valid.shape, len(images))
            after[valid] = encoded[offset : offset + sum(counts)].float() @ images.T
            offset += sum(counts)
            if self.annotated:
                records = [ctx.gallery.records[j] for j in pool.tolist()]
                answer = torch.zeros(*valid.shape, len(pool))
                for k, (attribute, count) in enumerate(zip(todo, counts, strict=True)):
                    answer[k, :count] = annotated_answers(attribute, records)
            else:
                logits = (after[..., pool] / self.answer_temperature).masked_fill(~valid[..., None], float("-inf"))
                answer = torch.softmax(logits, dim=1)
            gains = expected_log_rank_gain(before, after, pool, posterior, answer).tolist()
            best = max(range(len(todo)), key=lambda k: gains[k])  # the first of equals: vocabulary order
            questions[i] = descriptive_question(todo[best], gender_of(ctx.dialogues[i]))
        return questions
