"""ICL's reorganisation data augmentation (RDA, §3.3), the generation half: each record's text is enriched with VQA
answers about its image, decomposed into sub-sentences, and each sub-sentence rewritten several ways. The result is
the record's `rda_groups` (one group per sub-sentence: the sub-sentence and its rewrites), which the retriever
recombines at training time (`ireid.retriever.rda`).

Enrichment asks the human-centred questions of THI (a `Perception`: an MLLM, or the annotations of a synthetic
world, which is training data) and appends the new answers to the caption within a length limit; decomposition
follows, so the fluent merge of Eq. 5 would be split again. Decomposition and rewriting ask a text LLM
(`ireid.core.llm.ChatLLM`), in batches, through a `ReplyCache`, so a stopped run resumes without asking again.
Every reply is checked: list markers are stripped; empty, overlong or question lines are dropped; a decomposition
with no usable line falls back to the text's own sentences, and each fallback is counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ireid.core.llm import ChatLLM
from ireid.core.prompts import read_prompt
from ireid.core.records import Record
from ireid.core.reply_cache import ReplyCache
from ireid.core.reply_text import reply_lines, sentences, user_turn
from ireid.core.vocabulary.parse import stated_truth
from ireid.icl.perception import PROMPTS, Perception
from ireid.icl.thi import join_answers


@dataclass(frozen=True)
class RDASettings:
    rewrites: int = 3  # m: rewrites asked per sub-sentence
    max_sentences: int = 16  # sub-sentences kept per text
    max_words: int = 30  # per sub-sentence or rewrite
    max_enriched_words: int = 150  # the caption with the VQA answers appended
    max_new_tokens: int = 160

    def __post_init__(self) -> None:
        if self.rewrites < 0 or self.max_sentences < 1 or self.max_words < 1:
            raise ValueError(f"RDA settings: rewrites >= 0, max_sentences >= 1, max_words >= 1, got {self}")


class RDAGenerator:
    """Groups for records, a batch at a time; `counts` add up what was asked and every fallback."""

    def __init__(
        self,
        llm: ChatLLM,
        cache: ReplyCache,
        settings: RDASettings | None = None,
        perception: Perception | None = None,
    ):
        self.llm = llm
        self.cache = cache
        self.settings = settings or RDASettings()
        self.perception = perception
        self.decompose_template = read_prompt(PROMPTS, "rda_decomposition.txt")
        self.rewrite_template = read_prompt(PROMPTS, "rda_rewriting.txt")
        self.counts: Counter[str] = Counter()

    def _ask(self, prompts: list[str]) -> list[str]:
        s = self.settings
        return self.cache.ask(prompts, lambda missing: self.llm.chat([user_turn(p) for p in missing], s.max_new_tokens))

    def enrich(self, records: Sequence[Record]) -> list[str]:
        """Each record's caption (else fine description), with the VQA answers about its image it lacks appended."""
        texts = [(r.captions[0] if r.captions else r.fine_description).strip() for r in records]
        if self.perception is None:
            return texts
        answers = self.perception.describe([r.key for r in records])
        self.counts["described_images"] += len(records)
        return [join_answers(t, a, self.settings.max_enriched_words) for t, a in zip(texts, answers, strict=True)]

    def decompose(self, texts: Sequence[str]) -> list[list[str]]:
        s = self.settings
        replies = self._ask([self.decompose_template.replace("{text}", t) for t in texts])
        out = []
        for text, reply in zip(texts, replies, strict=True):
            lines = reply_lines(reply, s.max_words)
            if not lines:
                self.counts["decomposition_fallbacks"] += 1
                lines = [x for x in sentences(text) if len(x.split()) <= s.max_words] or [text]
            out.append(lines[: s.max_sentences])
        return out

    def rewrite(self, parts: Sequence[str]) -> list[list[str]]:
        s = self.settings
        if s.rewrites == 0:
            return [[] for _ in parts]
        prompts = [self.rewrite_template.replace("{count}", str(s.rewrites)).replace("{sentence}", p) for p in parts]
        out = []
        for part, reply in zip(parts, self._ask(prompts), strict=True):
            rewrites = [line for line in reply_lines(reply, s.max_words) if line.lower() != part.lower()]
            if not rewrites:
                self.counts["sentences_without_rewrites"] += 1
            out.append(rewrites[: s.rewrites])
        return out

    def groups(self, records: Sequence[Record]) -> list[list[list[str]]]:
        """Per record: one group per sub-sentence, the sub-sentence first, then its rewrites."""
        parts = self.decompose(self.enrich(records))
        flat = [p for record_parts in parts for p in record_parts]
        rewrites = iter(self.rewrite(flat))
        self.counts["records"] += len(records)
        self.counts["sub_sentences"] += len(flat)
        out = []
        for record_parts in parts:
            groups = [[p, *next(rewrites)] for p in record_parts]
            self.counts["rewrites"] += sum(len(g) - 1 for g in groups)
            out.append(groups)
        return out


def consistency(groups: Sequence[Sequence[str]], truth: Mapping[str, str]) -> Counter[str]:
    """Synthetic world: how many sentences of the groups state at least one attribute, and how many of those state
    only true values (`stated_truth`), for sub-sentences and rewrites apart."""
    counts: Counter[str] = Counter()
    for group in groups:
        for position, sentence in enumerate(group):
            kind = "sub_sentences" if position == 0 else "rewrites"
            counts[kind] += 1
            if (true := stated_truth(sentence, truth)) is not None:
                counts[f"{kind}_stating"] += 1
                counts[f"{kind}_true"] += true
    return counts
