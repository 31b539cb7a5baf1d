"""Interactive-PEDES construction (LLaVA-ReID §3.2): images in, records with a dialogue out.

1. **Coarse-to-fine captioning** (a vision-language model on the image): an initial description from one of
   Table 5's instructions, drawn per record, then a fine description that begins with it (Table 6).
2. **Sub-caption decomposition** (a text LLM): the follow-up description, i.e. the fine description without what the
   initial one says, split into one-aspect sentences (Table 7).
3. **Dialogue generation** (the text LLM): one Q&A pair per sub-caption (Table 8), its type drawn in the paper's mix
   (descriptive 50 %, yes/no 40 % with right and wrong assumptions, multiple choice 10 %), the pairs in random order.

Every model output is checked before it becomes data; one that fails is asked again with a format reminder (up to
`attempts` tries), then skipped and counted with its record's key: a Q&A pair alone, or the whole record when a
step it cannot do without fails. Replies go through `ReplyCache`s, so a stopped run asks nothing twice. Draws come
from a generator seeded by the record's key: a resumed run makes the same choices.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from PIL import Image

from ireid.core.llm import ChatLLM
from ireid.core.prompts import read_prompt
from ireid.core.protocols import VisionLanguageModel
from ireid.core.records import QA, Record
from ireid.core.reply_cache import ReplyCache
from ireid.core.reply_text import reply_lines, user_turn
from ireid.core.vocabulary.parse import parse_description, parse_question, stated_truth

PROMPTS = "ireid.core.interactive_pedes"
# Table 8's question prompts: file, the record's question type
QUESTION_KINDS = {
    "yes": ("qa_yes.txt", "yes_no"),
    "no": ("qa_no.txt", "yes_no"),
    "descriptive": ("qa_descriptive.txt", "descriptive"),
    "wh": ("qa_wh.txt", "descriptive"),
    "choice": ("qa_choice.txt", "multiple_choice"),
}
RETRY_NOTE = "Reply in exactly the format asked for and nothing else."

_QUESTION = re.compile(r"question\s*:\s*", re.IGNORECASE)
_ANSWER = re.compile(r"\banswer\s*:\s*", re.IGNORECASE)
_OPTION = re.compile(r"^\s*(?:[-*•]\s*)?\(?([A-D])\)\s*(.+?)\s*$", re.MULTILINE)  # "A) red", "- (B) blue"
_OPTIONS_LABEL = re.compile(r"\boptions\s*:\s*$", re.IGNORECASE)
_NUMBERED = re.compile(r"^\d+\.\s.*$", re.MULTILINE)
_WOMAN = re.compile(r"\b(woman|women|she|her|lady|girl)\b", re.IGNORECASE)

T = TypeVar("T")


@dataclass(frozen=True)
class ConstructionSettings:
    """The paper's question mix and the limits every generated text is checked against."""

    descriptive_share: float = 0.5
    yes_no_share: float = 0.4
    choice_share: float = 0.1
    positive_share: float = 0.5  # yes/no questions whose assumption is right (answered "Yes")
    attempts: int = 2  # tries per model output, the later ones with a format reminder, before a skip
    max_sub_captions: int = 12
    max_words: int = 40  # an initial description, a sub-caption, a question, an answer
    min_words: int = 3  # an initial description or a sub-caption ("No." describes nobody)
    max_fine_words: int = 250  # a fine or follow-up description
    caption_tokens: int = 64
    fine_tokens: int = 320
    text_tokens: int = 320  # follow-up description and decomposition
    qa_tokens: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        shares = (self.descriptive_share, self.yes_no_share, self.choice_share)
        if min(shares) < 0 or abs(sum(shares) - 1) > 1e-6:
            raise ValueError(f"question type shares must be >= 0 and sum to 1, got {shares}")
        if not 0 <= self.positive_share <= 1:
            raise ValueError(f"positive_share must lie in [0, 1], got {self.positive_share}")
        if self.attempts < 1 or self.max_sub_captions < 1 or self.max_words < 1 or self.max_fine_words < 1:
            raise ValueError("attempts, max_sub_captions, max_words and max_fine_words must be at least 1")


def words(text: str) -> int:
    return len(text.split())


def one_line(text: str) -> str:
    return " ".join(text.split()).strip(" \"'")


def subject_of(description: str) -> str:
    """Table 8's <subject>: "woman" or "man", from the description's words."""
    gender = parse_description(description).get("gender")
    if gender in {"man", "woman"}:
        return gender
    return "woman" if _WOMAN.search(description) else "man"


def parse_qa(reply: str, kind: str, max_words: int) -> QA | None:
    """Table 8's "Question: ... [A)-D)] Answer: ..." reply as a Q&A pair of `kind`, or None when it breaks the
    format: no question mark, an empty or overlong part, the wrong Yes/No, or not four different options."""
    found = _QUESTION.search(reply)
    if found is None:
        return None
    body = reply[found.end() :]
    split = _ANSWER.search(body)
    if split is None:
        return None
    asked, answer = body[: split.start()], one_line(_QUESTION.split(body[split.end() :])[0])
    options = [one_line(m.group(2)) for m in _OPTION.finditer(asked)]
    first_option = _OPTION.search(asked)
    question = _OPTIONS_LABEL.sub("", one_line(asked[: first_option.start()] if first_option else asked)).strip()
    if not question.endswith("?") or not answer or words(question) > max_words or words(answer) > max_words:
        return None
    if kind in {"yes", "no"} and not re.match(rf"{kind}\b", answer, re.IGNORECASE):
        return None
    if (kind == "choice") != (len(set(options)) == len(options) == 4):
        return None
    return QA(question=question, answer=answer, qtype=QUESTION_KINDS[kind][1], options=tuple(options))


@dataclass
class Draft:
    """One record on its way through the steps; `failed` names the step that ended it."""

    record: Record
    image: Image.Image | None
    initial: str = ""
    fine: str = ""
    follow_up: str = ""
    sub_captions: list[str] = dataclasses.field(default_factory=list)
    qas: list[QA] = dataclasses.field(default_factory=list)
    failed: str | None = None

    @property
    def rng(self) -> random.Random:
        """Draws that depend only on the record, so a resumed run repeats them."""
        return random.Random(f"{self.record.key}")

    def built(self) -> Record:
        return dataclasses.replace(
            self.record,
            initial_description=self.initial,
            fine_description=self.fine,
            sub_captions=self.sub_captions,
            qas=self.qas,
        )


class InteractivePedesBuilder:
    """The three steps over batches of records; `counts` and `skipped` say what was asked and what was dropped.

    `vlm` None takes each record's own initial and fine descriptions (step 1 from the annotations: on a synthetic
    world this uses ground truth, and measures steps 2 and 3 alone).
    """

    def __init__(
        self,
        llm: ChatLLM,
        llm_cache: ReplyCache,
        vlm: VisionLanguageModel | None = None,
        vlm_cache: ReplyCache | None = None,
        settings: ConstructionSettings | None = None,
    ):
        if vlm is not None and vlm_cache is None:
            raise ValueError("a vision-language model needs its own reply cache")
        self.llm, self.llm_cache, self.vlm, self.vlm_cache = llm, llm_cache, vlm, vlm_cache
        self.settings = settings or ConstructionSettings()
        self.coarse = read_prompt(PROMPTS, "coarse_captions.txt").splitlines()
        self.fine_template = read_prompt(PROMPTS, "fine_caption.txt")
        self.follow_up_template = read_prompt(PROMPTS, "follow_up.txt")
        self.decompose_template = read_prompt(PROMPTS, "sub_captions.txt")
        # Table 7's worked example, which a small model may echo instead of splitting the description
        self.example_sentences = set(reply_lines("\n".join(_NUMBERED.findall(self.decompose_template)), 10**6))
        self.qa_template = read_prompt(PROMPTS, "qa_base.txt")
        self.kind_prompts = {kind: read_prompt(PROMPTS, file) for kind, (file, _) in QUESTION_KINDS.items()}
        self.counts: Counter[str] = Counter()
        self.skipped: list[dict[str, str]] = []  # {"key", "step", "reason"}: records and Q&A pairs dropped

    # -- asking, checking, asking again ---------------------------------------------------------------------------

    def _valid(
        self,
        step: str,
        prompts: Sequence[str],
        send: Callable[[list[int], list[str]], list[str]],
        check: Callable[[int, str], T | None],
    ) -> list[T | None]:
        """Each prompt's checked reply, asked again with a reminder while it fails; None after `attempts` tries."""
        results: list[T | None] = [None] * len(prompts)
        todo = list(range(len(prompts)))
        for attempt in range(self.settings.attempts):
            if not todo:
                break
            if attempt:
                self.counts[f"{step}_retries"] += len(todo)
            note = "" if attempt == 0 else f"\n\n{RETRY_NOTE}" + (f" (try {attempt + 1})" if attempt > 1 else "")
            replies = send(todo, [prompts[i] + note for i in todo])
            for i, reply in zip(todo, replies, strict=True):
                results[i] = check(i, reply)
            todo = [i for i in todo if results[i] is None]
        return results

    def _ask_llm(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        chat = self.llm.chat
        return self.llm_cache.ask(prompts, lambda missing: chat([user_turn(p) for p in missing], max_new_tokens))

    def _ask_vlm(self, drafts: Sequence[Draft], prompts: list[str], max_new_tokens: int) -> list[str]:
        """Replies about each draft's image; the cache's request names the record, whose image it is."""
        assert self.vlm is not None and self.vlm_cache is not None
        requests = [f"{d.record.key}\n{p}" for d, p in zip(drafts, prompts, strict=True)]
        asked = {r: (p, d.image) for r, p, d in zip(requests, prompts, drafts, strict=True)}
        vlm = self.vlm

        def send(missing: list[str]) -> list[str]:
            return vlm.reply([asked[r][0] for r in missing], [asked[r][1] for r in missing], max_new_tokens)

        return self.vlm_cache.ask(requests, send)

    def _keep(self, drafts: Sequence[Draft], values: Sequence[Any], field: str, step: str, reason: str) -> list[Draft]:
        """Each draft's checked value into `field`; a draft without one fails at `step`. Returns the drafts still on."""
        for draft, value in zip(drafts, values, strict=True):
            if value is None:
                self._fail(draft, step, reason)
            else:
                setattr(draft, field, value)
        return [d for d in drafts if d.failed is None]

    def _fail(self, draft: Draft, step: str, reason: str) -> None:
        draft.failed = step
        self.counts[f"records_skipped_at_{step}"] += 1
        self.skipped.append({"key": draft.record.key, "step": step, "reason": reason})

    # -- the steps ------------------------------------------------------------------------------------------------

    def describe(self, drafts: Sequence[Draft]) -> None:
        """Step 1: the initial description (Table 5) and the fine description that begins with it (Table 6)."""
        s = self.settings
        if self.vlm is None:
            for d in drafts:
                d.initial, d.fine = one_line(d.record.initial_description), one_line(d.record.fine_description)
                if not d.initial or not d.fine:
                    self._fail(d, "captioning", "the record has no annotated initial or fine description")
            return

        def short(_: int, reply: str) -> str | None:
            lines = [line for line in reply_lines(reply, s.max_words) if words(line) >= s.min_words]
            return lines[0] if lines else None

        prompts = [d.rng.choice(self.coarse) for d in drafts]
        initials = self._valid(
            "initial", prompts, lambda idx, ps: self._ask_vlm([drafts[i] for i in idx], ps, s.caption_tokens), short
        )
        live = self._keep(drafts, initials, "initial", "captioning", "no usable initial description")

        def long(i: int, reply: str) -> str | None:
            text = one_line(reply)
            return text if words(live[i].initial) < words(text) <= s.max_fine_words else None

        prompts = [self.fine_template.replace("{init_query}", d.initial) for d in live]
        fines = self._valid(
            "fine", prompts, lambda idx, ps: self._ask_vlm([live[i] for i in idx], ps, s.fine_tokens), long
        )
        self._keep(live, fines, "fine", "captioning", "no usable fine description")

    def decompose(self, drafts: Sequence[Draft]) -> None:
        """Step 2: the follow-up description, then its sub-captions (Table 7)."""
        s = self.settings

        def follow(i: int, reply: str) -> str | None:
            text = one_line(reply)
            return text if 0 < words(text) <= s.max_fine_words else None

        prompts = [self.follow_up_template.replace("{initial}", d.initial).replace("{fine}", d.fine) for d in drafts]
        send = lambda idx, ps: self._ask_llm(ps, s.text_tokens)  # noqa: E731
        texts = self._valid("follow_up", prompts, send, follow)
        live = self._keep(drafts, texts, "follow_up", "decomposition", "no usable follow-up description")

        def split(_: int, reply: str) -> list[str] | None:
            lines = [
                line
                for line in reply_lines(reply, s.max_words)
                if line not in self.example_sentences and words(line) >= s.min_words
            ]
            return lines[: s.max_sub_captions] or None

        prompts = [self.decompose_template.replace("{description}", d.follow_up) for d in live]
        lines = self._valid("sub_captions", prompts, send, split)
        self._keep(live, lines, "sub_captions", "decomposition", "no usable sub-caption")

    def question_kind(self, rng: random.Random) -> str:
        """A Table 8 question prompt in the paper's mix (descriptive questions half plain, half Wh-)."""
        s, draw = self.settings, rng.random()
        if draw < s.descriptive_share:
            return rng.choice(("descriptive", "wh"))
        if draw < s.descriptive_share + s.yes_no_share:
            return "yes" if rng.random() < s.positive_share else "no"
        return "choice"

    def converse(self, drafts: Sequence[Draft]) -> None:
        """Step 3: one Q&A pair per sub-caption (Table 8), the record's pairs in random order."""
        s = self.settings
        asked: list[tuple[Draft, str]] = []
        prompts: list[str] = []
        for d in drafts:
            rng, subject = d.rng, subject_of(d.fine)
            for sub_caption in d.sub_captions:
                kind = self.question_kind(rng)
                asked.append((d, kind))
                prompt = self.qa_template.replace("{subject}", subject).replace("{sub_caption}", sub_caption)
                prompts.append(prompt.replace("{question_type_prompt}", self.kind_prompts[kind]))
        send = lambda idx, ps: self._ask_llm(ps, s.qa_tokens)  # noqa: E731
        pairs = self._valid("qa", prompts, send, lambda i, reply: parse_qa(reply, asked[i][1], s.max_words))
        for (d, kind), qa in zip(asked, pairs, strict=True):
            self.counts[f"qa_asked_{kind}"] += 1
            if qa is None:
                self.counts["qa_skipped"] += 1
                self.skipped.append({"key": d.record.key, "step": "qa", "reason": f"unusable {kind} Q&A reply"})
            else:
                self.counts[f"qa_kept_{kind}"] += 1
                d.qas.append(qa)
        for d in drafts:
            d.rng.shuffle(d.qas)
            if not d.qas:
                self._fail(d, "dialogue", "no usable Q&A pair")

    def build(self, records: Sequence[Record], images: Sequence[Image.Image | None]) -> list[Record | None]:
        """The batch's records in the Interactive-PEDES format; None for a record that was skipped (see `skipped`)."""
        drafts = [Draft(r, im) for r, im in zip(records, images, strict=True)]
        self.counts["records"] += len(drafts)
        for step in (self.describe, self.decompose, self.converse):
            live = [d for d in drafts if d.failed is None]
            if live:
                step(live)
        built = [None if d.failed else d.built() for d in drafts]
        self.counts["records_built"] += sum(r is not None for r in built)
        return built


def consistency(record: Record) -> Counter[str]:
    """A built synthetic record against its world's truth: sub-captions and answers that state an attribute, and
    how many of those state only true values; yes/no questions whose assumption is right exactly when answered Yes."""
    truth, counts = record.attributes, Counter[str]()
    texts = [("sub_captions", t) for t in record.sub_captions] + [("answers", qa.answer) for qa in record.qas]
    for kind, text in texts:
        counts[kind] += 1
        if (true := stated_truth(text, truth)) is not None:
            counts[f"{kind}_stating"] += 1
            counts[f"{kind}_true"] += true
    for qa in record.qas:
        parsed = parse_question(qa.question) if qa.qtype == "yes_no" else None
        if parsed is not None and parsed.assumed is not None and parsed.attribute in truth:
            counts["yes_no_assuming"] += 1
            said_yes = qa.answer.lower().startswith("yes")
            counts["yes_no_as_answered"] += (parsed.assumed == truth[parsed.attribute]) == said_yes
    return counts
