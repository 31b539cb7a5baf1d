"""The expected-gain rule: ask about the attribute whose answer is expected to lift the target most in the gallery.

Judged only from the current ranking, the gallery images' embeddings and the retriever's text encoder. For each
uncovered attribute and each of its values, the dialogue text with that value's statement appended is encoded and
scored against the whole gallery. The current top `pool` candidates stand for the target, weighted by a posterior
over them (a softmax of their scores); each candidate's likely answer is a softmax over the attribute's values of
its scores. The attribute with the largest expected fall of the target's log-rank in the gallery is chosen.

Two choices make it work, both measured: the ranks are the candidates' places in the whole gallery, not among
the pool (a question that lifts a candidate past people outside the pool is what helps); and the posterior is
flat enough to spread over many candidates (at round 0 the top candidate is the target about once in a hundred
searches, and a sharp posterior only protects the current leader). It speaks the pedestrian vocabulary
(`ireid.core.vocabulary`), so it runs on data described in it.

With `contradiction` < 1 the posterior also weighs how well each candidate fits what the dialogue already states
(Bayes' rule with the witness's answers as evidence): per stated attribute, the probability that the candidate shows
the stated value, floored at `contradiction`. The retriever ranks on text similarity and keeps candidates that
contradict an answer near the top; without this the rule spends questions on people the dialogue has ruled out.

With `annotated=True` each candidate's answer is the value its gallery record annotates instead: perfect eyes. Given
`eyes` (an attribute net's probabilities for every gallery image, `ireid.core.attribute_net`), each candidate's answer
is what the net reads off its image, for the attributes the net names. The `expected-gain`, `expected-gain:reader`
and `expected-gain:annotated` (uses ground truth) strategies of `ireid.interactive` ask with it;
the questioner's `expected` training targets (`ireid.questioner.lookforward`) are its annotated choices over the
training gallery, whose annotations are training data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ireid.core.protocols import ContinuationEncoder, TextImageRetriever
from ireid.core.records import Record
from ireid.core.rounds import RoundContext
from ireid.core.vocabulary.asking import gender_of, uncovered_attributes
from ireid.core.vocabulary.attributes import ATTRIBUTES
from ireid.core.vocabulary.parse import parse_description
from ireid.core.vocabulary.templates import TEMPLATES, fields


def value_statements(attribute: str, gender: str | None) -> list[str]:
    """One statement per value of `attribute` (the first template), as a witness would answer the question; gender,
    which no question asks, as an initial description states it."""
    if attribute == "gender":
        return [f"It was a {value}." for value in ATTRIBUTES[attribute].values]
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


def annotated_values(records: Sequence[Record], attribute: str) -> Tensor:
    """[P] each record's annotated value of `attribute` as its index in the vocabulary; -1 where a record does not
    annotate it (or annotates a value outside the vocabulary)."""
    values = ATTRIBUTES[attribute].values
    return torch.tensor([values.index(v) if (v := r.attributes.get(attribute)) in values else -1 for r in records])


def one_hot_answers(values: Tensor, count: int) -> Tensor:
    """[V, P] one-hot answers from value indices [P] (see `annotated_values`); uniform over the V = `count` values
    where the index is -1."""
    answer = torch.full((count, len(values)), 1.0 / count)
    known = values >= 0
    answer[:, known] = torch.nn.functional.one_hot(values[known], count).T.float()
    return answer


def encode_continuations(
    retriever: TextImageRetriever, prefixes: Sequence[str], endings: Sequence[Sequence[str]], batch_size: int = 1024
) -> Tensor:
    """`encode_text` of every `f"{prefix} {ending}"` (`ContinuationEncoder`): through the retriever's shared-prefix
    encoder when it has one (each dialogue then runs once, not once per value), else `batch_size` texts at a time."""
    if isinstance(retriever, ContinuationEncoder):
        return retriever.encode_continuations(prefixes, endings)
    texts = [f"{prefix} {ending}" for prefix, group in zip(prefixes, endings, strict=True) for ending in group]
    return torch.cat([retriever.encode_text(texts[s : s + batch_size]) for s in range(0, len(texts), batch_size)])


@dataclass(frozen=True)
class ExpectedGainRule:
    """The rule's settings: `pool` candidates stand for the target under softmax(score / `temperature`), times their
    fit to the dialogue's statements floored at `contradiction` (1: not weighed); each candidate's likely answer is
    softmax(score / `answer_temperature`) over an attribute's values, or with `annotated` its gallery record's
    value."""

    pool: int = 200
    temperature: float = 0.2
    answer_temperature: float = 0.02
    annotated: bool = False
    contradiction: float = 0.2

    def __post_init__(self) -> None:
        if self.pool < 2:
            raise ValueError(f"expected-gain needs a pool of at least 2 candidates, got {self.pool}")
        if not 0.0 <= self.contradiction <= 1.0:
            raise ValueError(f"expected-gain's contradiction must be within [0, 1], got {self.contradiction}")

    def read_answers(
        self, ctx: RoundContext, attribute: str, seen: dict[tuple[str, str | None], Tensor],
        eyes: Mapping[str, Tensor] | None = None,
    ) -> Tensor | None:  # fmt: skip
        """[V, N] every gallery image's answer about `attribute` where it is read rather than guessed through the
        retriever: its annotation (`annotated`; one-hot, kept in `seen` for the call) or what `eyes` read off it.
        None where neither reads it."""
        if self.annotated:
            key = (attribute, None)
            if key not in seen:
                values = annotated_values(ctx.gallery.records, attribute)
                seen[key] = one_hot_answers(values, len(ATTRIBUTES[attribute].values))
            return seen[key]
        if eyes is not None and attribute in eyes:
            return eyes[attribute].T
        return None

    def stated_likelihood(
        self, ctx: RoundContext, text: str, gender: str | None, pool: Tensor,
        seen: dict[tuple[str, str | None], Tensor], eyes: Mapping[str, Tensor] | None = None,
    ) -> Tensor:  # fmt: skip
        """[P] how well each pool candidate fits what `text` states: per stated attribute, the probability that the
        candidate shows the stated value (`read_answers`, or else the softmax over the value statements' scores
        against its image), floored at `contradiction`, multiplied over the attributes. `seen` keeps, for the call,
        each attribute's read answers or value-statement embeddings."""
        likelihood = torch.ones(len(pool))
        for attribute, value in parse_description(text).items():
            values = ATTRIBUTES[attribute].values  # parse_description speaks only the vocabulary's attributes
            if value not in values:
                continue
            read = self.read_answers(ctx, attribute, seen, eyes)
            if read is not None:
                answers = read[:, pool]
            else:
                key = (attribute, gender)
                if key not in seen:
                    seen[key] = ctx.retriever.encode_text(value_statements(attribute, gender)).float()
                scores = seen[key] @ ctx.gallery.embeddings[pool].float().T
                answers = torch.softmax(scores / self.answer_temperature, dim=0)
            likelihood *= self.contradiction + (1.0 - self.contradiction) * answers[values.index(value)]
        return likelihood

    @torch.no_grad()
    def choose(self, ctx: RoundContext, eyes: Mapping[str, Tensor] | None = None) -> list[str | None]:
        """Per dialogue, the uncovered attribute to ask about (None when every attribute is covered). `eyes`: per
        attribute, [N, V] probabilities of each gallery image's values in the vocabulary's order (`ATTRIBUTES`);
        attributes it lacks are read through the retriever."""
        plans: list[tuple[int, list[str], list[int]]] = []  # (dialogue, attributes, values per attribute)
        prefixes: list[str] = []
        genders: list[str | None] = []
        seen: dict[tuple[str, str | None], Tensor] = {}
        endings: list[list[str]] = []  # per dialogue, each uncovered attribute's statements in turn
        for i, dialogue in enumerate(ctx.dialogues):
            current = ctx.text_of(dialogue)
            todo = uncovered_attributes(dialogue, current)
            gender = gender_of(dialogue)
            statements = [value_statements(attribute, gender) for attribute in todo]
            prefixes.append(current)
            genders.append(gender)
            endings.append([s for group in statements for s in group])
            plans.append((i, todo, [len(group) for group in statements]))
        if not any(endings):
            return [None] * len(ctx.dialogues)
        encoded = encode_continuations(ctx.retriever, prefixes, endings)
        images = ctx.gallery.embeddings.float()
        asked = {a for _, todo, _ in plans for a in todo}
        read = {a: self.read_answers(ctx, a, seen, eyes) for a in asked}
        table = {a: answers for a, answers in read.items() if answers is not None}  # [V, N] each
        chosen: list[str | None] = [None] * len(ctx.dialogues)
        offset = 0
        for i, todo, counts in plans:
            if not todo:
                continue
            before = ctx.scores[i].float()
            pool = torch.topk(before, min(self.pool, len(ctx.gallery))).indices
            posterior = torch.softmax(before[pool] / self.temperature, dim=0)
            if self.contradiction < 1.0:
                posterior = posterior * self.stated_likelihood(ctx, prefixes[i], genders[i], pool, seen, eyes)
                posterior = posterior / posterior.sum().clamp_min(1e-30)
            # every question's answers at once, padded to the longest value list: [A, V, N]
            valid = torch.zeros(len(todo), max(counts), dtype=torch.bool)
            for k, count in enumerate(counts):
                valid[k, :count] = True
            after = torch.zeros(*valid.shape, len(images))
            after[valid] = encoded[offset : offset + sum(counts)].float() @ images.T
            offset += sum(counts)
            logits = (after[..., pool] / self.answer_temperature).masked_fill(~valid[..., None], float("-inf"))
            answer = torch.softmax(logits, dim=1)
            for k, (attribute, count) in enumerate(zip(todo, counts, strict=True)):
                if attribute in table:
                    answer[k] = 0.0
                    answer[k, :count] = table[attribute][:, pool]
            gains = expected_log_rank_gain(before, after, pool, posterior, answer).tolist()
            chosen[i] = todo[max(range(len(todo)), key=lambda k: gains[k])]  # the first of equals: vocabulary order
        return chosen
