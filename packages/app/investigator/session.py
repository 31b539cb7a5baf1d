"""One investigation: a witness's description, the system's questions and the person's answers, the ranking after
each, candidates marked "not them" (removed with their look-alikes) or "this is them" (the result), and its export.

The dialogue is LLaVA-ReID's: the retriever reads the description and the cleaned answers, and a question strategy
(the trained questioner, or any strategy of the harness) asks the next question from the ranking. A "yes" to a
question carries the question's content into the retrieval text ("Yes, is he wearing a red top" reads as the fact);
"no" and "don't know" add nothing to it. Sessions are independent objects behind random ids; model calls are
serialised (one retriever, one strategy), each session's state has its own lock.
"""

from __future__ import annotations

import io
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image, ImageDraw
from torch import Tensor

from ireid.app.investigator.gallery import SearchGallery
from ireid.core.protocols import Dialogue, TextImageRetriever
from ireid.core.records import Record, make_key
from ireid.core.rounds import QuestionStrategy, RoundContext, retrieval_text_reader

EXPORT_FORMAT = "ireid-investigation/1"
ANSWER_KINDS = ("yes", "no", "dont_know", "text")
OPEN_QUESTION = "Is there anything else you remember about the person?"
EXCLUDED = -10.0  # below any cosine: an excluded image is never ranked above a candidate


class InvestigationError(ValueError):
    """A request the session cannot take (empty or overlong text, unknown image, finished session): one line."""


class UnknownSession(KeyError):
    """No session has this id (never made, or expired)."""


@dataclass(frozen=True)
class InvestigatorSettings:
    top_k: int = 12  # candidates shown
    max_text_chars: int = 1000  # a description or an answer
    max_turns: int = 50
    look_alike_cosine: float = 0.9  # "not them" also removes images this similar to the marked one
    max_look_alikes: int = 20
    max_sessions: int = 1000  # the oldest are dropped beyond this
    seed: int = 0

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.max_text_chars < 1 or self.max_turns < 1 or self.max_sessions < 1:
            raise ValueError("top_k, max_text_chars, max_turns and max_sessions must be at least 1")


@dataclass
class Investigation:
    id: str
    description: str
    dialogue: Dialogue
    kinds: list[str] = field(default_factory=list)  # each turn's answer kind
    question: str | None = None  # the question waiting for an answer
    rejected: list[str] = field(default_factory=list)  # keys marked "not them"
    excluded: set[int] = field(default_factory=set)  # gallery rows removed (the rejected and their look-alikes)
    accepted: str | None = None
    top_scores: list[float] = field(default_factory=list)  # the best score after the description and each answer
    scores: Tensor | None = None  # every image's score now (excluded ones at EXCLUDED)
    ranks: Tensor | None = None  # every image's rank now (1-based), and before the last change
    previous_ranks: Tensor | None = None
    started: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def finished(self) -> bool:
        return self.accepted is not None


def affirmed(question: str) -> str:
    """A "yes" answer that keeps the question's content for the retriever."""
    return f"Yes, {question.strip().rstrip('?').strip()}."


def answer_text(kind: str, text: str | None, question: str) -> str:
    if kind == "yes":
        return affirmed(question)
    if kind == "no":
        return "No."
    if kind == "dont_know":
        return "I don't know."
    return text or ""


class Investigator:
    """Sessions over one gallery, one retriever and one question strategy."""

    def __init__(
        self,
        gallery: SearchGallery,
        retriever: TextImageRetriever,
        strategy: QuestionStrategy,
        settings: InvestigatorSettings | None = None,
    ):
        self.gallery = gallery
        self.retriever = retriever
        self.strategy = strategy
        self.settings = settings or InvestigatorSettings()
        self.text_of = retrieval_text_reader()
        self.sessions: OrderedDict[str, Investigation] = OrderedDict()
        self._sessions_lock = threading.Lock()
        self._models = threading.Lock()  # one retriever and strategy, called one request at a time
        self.index_of = {key: i for i, key in enumerate(gallery.gallery.keys)}

    # -- checks ---------------------------------------------------------------------------------------------------

    def _text(self, text: str | None, what: str) -> str:
        text = " ".join((text or "").split())
        if not text:
            raise InvestigationError(f"{what}: empty text")
        if len(text) > self.settings.max_text_chars:
            raise InvestigationError(f"{what}: {len(text)} characters, more than {self.settings.max_text_chars}")
        return text

    def _row(self, key: str) -> int:
        if key not in self.index_of:
            raise InvestigationError(f"image {key!r} is not in the gallery")
        return self.index_of[key]

    def get(self, session_id: str) -> Investigation:
        with self._sessions_lock:
            if session_id not in self.sessions:
                raise UnknownSession(session_id)
            return self.sessions[session_id]

    # -- the dialogue ---------------------------------------------------------------------------------------------

    def _scores(self, inv: Investigation) -> Tensor:
        with self._models:
            text = self.retriever.encode_text([self.text_of(inv.dialogue)])
        scores = self.gallery.gallery.scores(text)[0]
        if inv.excluded:
            scores[list(inv.excluded)] = EXCLUDED
        return scores

    def _rank(self, inv: Investigation, scores: Tensor, *, new_round: bool) -> None:
        order = torch.argsort(scores, descending=True, stable=True)
        ranks = torch.empty_like(order)
        ranks[order] = torch.arange(1, len(order) + 1)
        inv.previous_ranks, inv.ranks, inv.scores = inv.ranks, ranks, scores
        if new_round:
            inv.top_scores.append(float(scores[order[0]]))

    def _ask(self, inv: Investigation, scores: Tensor) -> None:
        if len(inv.dialogue.turns) >= self.settings.max_turns:
            inv.question = None
            return
        record = Record(key=make_key("session", inv.id), pid=-1, split="test", source="investigator",
                        initial_description=inv.description)  # fmt: skip
        ctx = RoundContext(
            round=len(inv.dialogue.turns) + 1,
            queries=[record],
            dialogues=[inv.dialogue],
            scores=scores[None],
            gallery=self.gallery.gallery,
            retriever=self.retriever,
            text_of=self.text_of,
            seed=self.settings.seed,
        )
        with self._models:
            [question] = self.strategy.ask(ctx)
        inv.question = question or OPEN_QUESTION

    def _store(self, inv: Investigation) -> Investigation:
        with self._sessions_lock:
            self.sessions[inv.id] = inv
            while len(self.sessions) > self.settings.max_sessions:
                self.sessions.popitem(last=False)
        return inv

    def start(self, description: str) -> Investigation:
        text = self._text(description, "description")
        inv = Investigation(secrets.token_urlsafe(16), text, Dialogue(text))
        scores = self._scores(inv)
        self._rank(inv, scores, new_round=True)
        self._ask(inv, scores)
        return self._store(inv)

    def answer(self, inv: Investigation, kind: str, text: str | None = None) -> Investigation:
        if kind not in ANSWER_KINDS:
            raise InvestigationError(f"answer kind {kind!r}: expected one of {', '.join(ANSWER_KINDS)}")
        with inv.lock:
            self._open(inv)
            question = inv.question or OPEN_QUESTION
            reply = self._text(text, "answer") if kind == "text" else answer_text(kind, None, question)
            inv.dialogue.ask(question, reply)
            inv.kinds.append(kind)
            scores = self._scores(inv)
            self._rank(inv, scores, new_round=True)
            self._ask(inv, scores)
        return inv

    def reject(self, inv: Investigation, key: str) -> list[str]:
        """Mark `key` "not them": it and its look-alikes leave the ranking; returns the keys removed."""
        row = self._row(key)
        with inv.lock:
            self._open(inv)
            embeddings = self.gallery.gallery.embeddings
            similar = embeddings @ embeddings[row]
            similar[list(inv.excluded | {row})] = -2.0
            count = min(self.settings.max_look_alikes, len(similar))
            values, rows = torch.topk(similar, count)
            look_alikes = [int(j) for v, j in zip(values.tolist(), rows.tolist(), strict=True)
                           if v >= self.settings.look_alike_cosine]  # fmt: skip
            removed = [row, *look_alikes]
            inv.rejected.append(key)
            inv.excluded.update(removed)
            self._rank(inv, self._scores(inv), new_round=False)
        return [self.gallery.gallery.keys[j] for j in removed]

    def accept(self, inv: Investigation, key: str) -> None:
        self._row(key)
        with inv.lock:
            self._open(inv)
            inv.accepted = key
            inv.question = None

    def _open(self, inv: Investigation) -> None:
        if inv.finished:
            raise InvestigationError(f"session {inv.id} is finished: {inv.accepted} was marked as the person")

    # -- what the page shows, export and resume -------------------------------------------------------------------

    def candidates(self, inv: Investigation) -> list[dict[str, Any]]:
        """The top candidates with their score and rank change since the last answer or mark (positive: up)."""
        assert inv.ranks is not None and inv.scores is not None
        scores = inv.scores
        order = torch.argsort(inv.ranks)[: self.settings.top_k].tolist()
        shown = []
        for row in order:
            if row in inv.excluded:
                break
            before = None if inv.previous_ranks is None else int(inv.previous_ranks[row])
            rank = int(inv.ranks[row])
            shown.append({"key": self.gallery.gallery.keys[row], "rank": rank, "score": round(float(scores[row]), 4),
                          "change": None if before is None else before - rank})  # fmt: skip
        return shown

    def view(self, inv: Investigation) -> dict[str, Any]:
        return {
            "session": inv.id,
            "description": inv.description,
            "question": inv.question,
            "history": [
                {"question": t.question, "answer": t.answer, "kind": k}
                for t, k in zip(inv.dialogue.turns, inv.kinds, strict=True)
            ],
            "candidates": self.candidates(inv),
            "top_scores": [round(s, 4) for s in inv.top_scores],
            "rejected": list(inv.rejected),
            "removed": len(inv.excluded),
            "accepted": inv.accepted,
            "finished": inv.finished,
        }

    def export(self, inv: Investigation) -> dict[str, Any]:
        view = self.view(inv)
        kept = ("description", "history", "rejected", "accepted", "top_scores", "candidates")
        return {
            "format": EXPORT_FORMAT,
            "gallery": self.gallery.source,
            "strategy": self.strategy.name,
            "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **{k: view[k] for k in kept},
        }

    def contact_sheet(self, inv: Investigation, columns: int = 6, size: tuple[int, int] = (96, 192)) -> bytes:
        """The top candidates as a PNG grid, each with its rank and score, the accepted one framed."""
        shown = self.candidates(inv)
        rows = max(1, -(-len(shown) // columns))
        width, height = size
        sheet = Image.new("RGB", (columns * width, 24 + rows * (height + 18)), "white")
        draw = ImageDraw.Draw(sheet)
        draw.text((4, 6), inv.description[:120], fill="black")
        for i, (candidate, image) in enumerate(zip(shown, self.gallery.images.load([c["key"] for c in shown]),
                                                   strict=True)):  # fmt: skip
            x, y = (i % columns) * width, 24 + (i // columns) * (height + 18)
            sheet.paste(image.resize(size), (x, y))
            draw.text((x + 3, y + height + 2), f"#{candidate['rank']} {candidate['score']:.3f}", fill="black")
            if candidate["key"] == inv.accepted:
                draw.rectangle((x, y, x + width - 1, y + height - 1), outline="red", width=3)
        buffer = io.BytesIO()
        sheet.save(buffer, format="PNG")
        return buffer.getvalue()

    def resume(self, exported: Any) -> Investigation:
        """A new session that replays an export: the description, each answer to its question, every mark."""
        if not isinstance(exported, dict) or exported.get("format") != EXPORT_FORMAT:
            raise InvestigationError(f"not an exported investigation: field 'format' must be {EXPORT_FORMAT!r}")
        history = exported.get("history", [])
        if not isinstance(history, list) or len(history) > self.settings.max_turns:
            raise InvestigationError(f"field 'history': a list of at most {self.settings.max_turns} turns")
        rejected, accepted = exported.get("rejected", []), exported.get("accepted")
        if not isinstance(rejected, list) or not all(isinstance(k, str) for k in rejected):
            raise InvestigationError("field 'rejected': a list of image keys")
        for key in [*rejected, *([accepted] if accepted is not None else [])]:
            if not isinstance(key, str):
                raise InvestigationError("field 'accepted': an image key or null")
            self._row(key)
        inv = self.start(exported.get("description") or "")
        for i, turn in enumerate(history):
            if not isinstance(turn, dict) or turn.get("kind") not in ANSWER_KINDS:
                raise InvestigationError(f"field 'history[{i}]': an object with 'question', 'answer' and 'kind'")
            inv.question = self._text(turn.get("question"), f"history[{i}].question")
            self.answer(inv, turn["kind"], turn.get("answer") if turn["kind"] == "text" else None)
        for key in rejected:
            self.reject(inv, key)
        if accepted is not None:
            self.accept(inv, accepted)
        return inv
