"""`plugir-llm`: PlugIR (Lee et al., 2024) with real models: captions of the retrieved candidates, LLM questions and
the redundancy filter.

Each round, per dialogue: k-means over the top of the ranking (PlugIR's shrinking pool, `shrinking_pool`) picks
cluster representatives; a captioner describes them (a vision-language model asked about each gallery image, each
image once per run); a chat LLM reads the dialogue and the captions and writes `questions` candidate questions; the
filter then asks the LLM to answer each candidate from the dialogue alone, in order, and keeps the first it cannot
answer (an answerable question would add nothing). The vocabulary `plugir` (`heuristic.py`) stands in for all three
models with the synthetic world's parser. With the `AnnotatedCaptioner` (the gallery's fine descriptions as
captions: perfect eyes) the strategy uses ground truth.

Replies that cannot be used fall back and are counted in `counts`: no usable question (the open question
`OPEN_QUESTION`, once), every candidate answerable (the first candidate), an empty filter reply (the question is
kept), an empty caption (left out of the prompt).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from ireid.core.gallery import Gallery
from ireid.core.images import ImageSource
from ireid.core.llm import ChatLLM
from ireid.core.prompts import read_prompt
from ireid.core.protocols import Dialogue, VisionLanguageModel
from ireid.core.reply_text import user_turn
from ireid.core.rounds import RoundContext
from ireid.interactive.candidates import CANDIDATE_METHODS, CandidateMethod, select_candidates, shrinking_pool
from ireid.interactive.strategies.chatir import dialogue_lines, reply_questions

# Asked when the LLM writes no usable question: open, so the witness can still add something.
OPEN_QUESTION = "What else do you remember about the person's appearance?"
# A filter reply saying the dialogue does not answer the question.
_UNANSWERED = (
    "uncertain", "unknown", "not sure", "don't know", "do not know", "does not say", "doesn't say", "not mention",
    "no information", "not specified", "not stated", "unclear", "cannot", "can't",
)  # fmt: skip


def answered_by_dialogue(reply: str) -> bool | None:
    """Whether the filter's reply answers the question (True) or says the dialogue does not (False); None when the
    reply is empty."""
    text = " ".join(reply.split()).lower()
    if not text:
        return None
    return not any(marker in text for marker in _UNANSWERED)


class Captioner(Protocol):
    """Describes gallery images by index: what PlugIR's LLM reads of the retrieved candidates."""

    uses_ground_truth: bool

    def caption(self, gallery: Gallery, indices: Sequence[int]) -> list[str]: ...


class VisionCaptioner:
    """A vision-language model's free description of each gallery image (`plugir_caption.txt`)."""

    uses_ground_truth = False

    def __init__(self, model: VisionLanguageModel, images: ImageSource, max_new_tokens: int = 48):
        self.model, self.images, self.max_new_tokens = model, images, max_new_tokens
        self.prompt = read_prompt("ireid.interactive", "plugir_caption.txt")

    def caption(self, gallery: Gallery, indices: Sequence[int]) -> list[str]:
        images = self.images.load([gallery.keys[j] for j in indices])
        return self.model.reply([self.prompt] * len(images), images, self.max_new_tokens)


class AnnotatedCaptioner:
    """The gallery records' fine descriptions as captions: a captioner with perfect eyes, so it uses ground truth."""

    uses_ground_truth = True

    def caption(self, gallery: Gallery, indices: Sequence[int]) -> list[str]:
        return [gallery.records[j].fine_description for j in indices]


class PlugIRLLM:
    """Questions an LLM writes from the dialogue and the candidates' captions, the first non-redundant one asked."""

    name = "plugir-llm"

    def __init__(
        self,
        llm: ChatLLM,
        captioner: Captioner,
        top_n: int = 500,
        clusters: int = 10,
        method: CandidateMethod = "k-means",
        questions: int = 5,
        max_new_tokens: int = 96,
        filter_tokens: int = 16,
    ):
        if method not in CANDIDATE_METHODS:
            raise ValueError(f"unknown candidate method {method!r}; expected one of {', '.join(CANDIDATE_METHODS)}")
        if questions < 1 or clusters < 1:
            raise ValueError(f"questions and clusters must be at least 1, got {questions} and {clusters}")
        self.llm, self.captioner = llm, captioner
        self.uses_ground_truth = captioner.uses_ground_truth
        self.top_n, self.clusters, self.method, self.questions = top_n, clusters, method, questions
        self.max_new_tokens, self.filter_tokens = max_new_tokens, filter_tokens
        self.question_template = read_prompt("ireid.interactive", "plugir_questions.txt")
        self.filter_template = read_prompt("ireid.interactive", "plugir_filter.txt")
        self.counts: Counter[str] = Counter()
        self._captions: dict[str, str] = {}  # gallery key -> caption, so a representative is captioned once a run

    def captions(self, gallery: Gallery, indices: Sequence[int]) -> list[str]:
        """The caption of each gallery image, from the captioner only for keys not captioned yet."""
        missing: dict[str, int] = {}
        for j in indices:
            if gallery.keys[j] not in self._captions:
                missing.setdefault(gallery.keys[j], j)
        if missing:
            for key, text in zip(missing, self.captioner.caption(gallery, list(missing.values())), strict=True):
                self._captions[key] = " ".join(text.split())
                self.counts["captioned_images"] += 1
                if not self._captions[key]:
                    self.counts["empty_captions"] += 1
        return [self._captions[gallery.keys[j]] for j in indices]

    def candidate_questions(self, ctx: RoundContext) -> list[list[str]]:
        """Up to `questions` new questions per dialogue, written from its dialogue and its representatives' captions."""
        pool = shrinking_pool(ctx.round, self.top_n, self.clusters)
        picks = [
            select_candidates(self.method, ctx.scores[i], ctx.gallery.embeddings, self.clusters, pool, ctx.rng(i))
            for i in range(len(ctx.dialogues))
        ]
        captions = self.captions(ctx.gallery, [j for row in picks for j in row])
        prompts, start = [], 0
        for dialogue, row in zip(ctx.dialogues, picks, strict=True):
            shown = [c for c in captions[start : start + len(row)] if c]
            start += len(row)
            listed = "\n".join(f"{n}. {c}" for n, c in enumerate(shown, 1)) or "(no descriptions)"
            prompts.append(
                self.question_template.format(dialogue=dialogue_lines(dialogue), captions=listed, count=self.questions)
            )
        replies = self.llm.chat([user_turn(p) for p in prompts], self.max_new_tokens)
        candidates = []
        for dialogue, reply in zip(ctx.dialogues, replies, strict=True):
            asked = {q.lower() for q in dialogue.asked}
            candidates.append([q for q in reply_questions(reply) if q.lower() not in asked][: self.questions])
        return candidates

    def first_informative(self, dialogues: Sequence[Dialogue], candidates: Sequence[Sequence[str]]) -> list[str | None]:
        """PlugIR's redundancy filter: per dialogue the first candidate the LLM cannot answer from the dialogue alone,
        else (every one answerable) the first candidate. One batched LLM call per candidate position."""
        chosen: list[str | None] = [None] * len(dialogues)
        pending, step = [i for i, c in enumerate(candidates) if c], 0
        while pending:
            prompts = [
                self.filter_template.format(dialogue=dialogue_lines(dialogues[i]), question=candidates[i][step])
                for i in pending
            ]
            replies = self.llm.chat([user_turn(p) for p in prompts], self.filter_tokens)
            still = []
            for i, reply in zip(pending, replies, strict=True):
                answered = answered_by_dialogue(reply)
                if answered is None:
                    self.counts["unreadable_filter_replies"] += 1
                if not answered:
                    chosen[i] = candidates[i][step]
                    continue
                self.counts["redundant_questions"] += 1
                if step + 1 < len(candidates[i]):
                    still.append(i)
                else:
                    self.counts["filter_fallbacks"] += 1
                    chosen[i] = candidates[i][0]
            pending, step = still, step + 1
        return chosen

    def ask(self, ctx: RoundContext) -> list[str | None]:
        candidates = self.candidate_questions(ctx)
        questions = self.first_informative(ctx.dialogues, candidates)
        for i, dialogue in enumerate(ctx.dialogues):
            if not candidates[i]:
                self.counts["question_fallbacks"] += 1
                questions[i] = OPEN_QUESTION if OPEN_QUESTION not in dialogue.asked else None
        return questions
