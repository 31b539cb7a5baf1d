"""`simirv-llm`: SimIRV (Liang & Albanie, 2023) on any data: an LLM lists the objects the initial description names,
then each is asked about in turn.

The vocabulary `simirv` (`heuristic.py`) reads objects with the synthetic world's parser; here a chat LLM extracts
them (one call per distinct initial description, remembered) and writes each object's question from the dialogue.
After the description's objects come `extra_objects` (the evaluation config's default: generic parts of a
pedestrian, `ireid.interactive.config.PERSON_PARTS`), so a dialogue need not stop when a short description names one
thing. It reads only the dialogue, never the gallery. Replies that cannot be used fall back and are counted in
`counts`: no object listed (the extra objects alone), no usable question (the fixed template `OBJECT_QUESTION`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from ireid.core.llm import ChatLLM
from ireid.core.prompts import read_prompt
from ireid.core.protocols import Dialogue
from ireid.core.reply_text import reply_items, user_turn
from ireid.core.rounds import RoundContext
from ireid.interactive.strategies.chatir import dialogue_lines, reply_questions

# The question about an object when the LLM writes none usable (and every question with write_questions=False).
OBJECT_QUESTION = "Can you describe the person's {object} in more detail?"
_NONE = {"none", "nothing", "n/a", "no objects"}
# Words for the person themselves, which a small model lists among the objects: asking about them adds nothing.
_PERSON = {"person", "man", "woman", "boy", "girl", "lady", "guy", "people", "someone", "pedestrian"}
_ARTICLE = re.compile(r"^(?:a|an|the|his|her|their)\s+", re.IGNORECASE)


def parse_objects(reply: str, max_objects: int, max_words: int = 4) -> list[str]:
    """The objects of an extraction reply, each once (lower case, no article or final full stop): one per line or
    comma-separated; "none", the person themselves and sentences longer than `max_words` (the model talking, not
    listing) are out."""
    found: list[str] = []
    for item in reply_items(reply):
        for part in item.split(","):
            name = _ARTICLE.sub("", " ".join(part.split()).strip(" .;:\"'").lower())
            words = name.split()
            if words and name not in _NONE and words[-1] not in _PERSON and len(words) <= max_words:
                found.append(name)
    return list(dict.fromkeys(found))[:max_objects]


class SimIRVLLM:
    """Each object of the initial description (then each extra object) asked about once, in order."""

    name = "simirv-llm"
    uses_ground_truth = False

    def __init__(
        self,
        llm: ChatLLM,
        extra_objects: Sequence[str] = (),
        max_objects: int = 4,
        write_questions: bool = True,
        max_new_tokens: int = 48,
    ):
        if max_objects < 1:
            raise ValueError(f"max_objects must be at least 1, got {max_objects}")
        self.llm, self.max_objects, self.write_questions = llm, max_objects, write_questions
        self.extra_objects = [o.strip().lower() for o in extra_objects if o.strip()]
        self.max_new_tokens = max_new_tokens
        self.extract_template = read_prompt("ireid.interactive", "simirv_objects.txt")
        self.question_template = read_prompt("ireid.interactive", "simirv_question.txt")
        self.counts: Counter[str] = Counter()
        self._objects: dict[str, list[str]] = {}  # initial description -> objects to ask about, in order
        self._asked: dict[tuple[str, str], str] = {}  # (initial description, question) -> the object it asked about

    def objects(self, initials: Sequence[str]) -> list[list[str]]:
        """The objects to ask about for each initial description; the LLM is asked once per description not seen."""
        missing = list(dict.fromkeys(i for i in initials if i not in self._objects))
        if missing:
            conversations = [user_turn(self.extract_template.format(description=i)) for i in missing]
            for initial, reply in zip(missing, self.llm.chat(conversations, self.max_new_tokens), strict=True):
                named = parse_objects(reply, self.max_objects)
                self.counts["extractions"] += 1
                if not named:
                    self.counts["extraction_fallbacks"] += 1
                self._objects[initial] = list(dict.fromkeys([*named, *self.extra_objects]))
        return [self._objects[i] for i in initials]

    def next_object(self, dialogue: Dialogue, objects: Sequence[str]) -> str | None:
        """The first object no question of the dialogue has asked about yet."""
        done = {self._asked.get((dialogue.initial, q)) for q in dialogue.asked}
        return next((o for o in objects if o not in done), None)

    def ask(self, ctx: RoundContext) -> list[str | None]:
        objects = self.objects([d.initial for d in ctx.dialogues])
        targets = [self.next_object(d, o) for d, o in zip(ctx.dialogues, objects, strict=True)]
        todo = [(i, target) for i, target in enumerate(targets) if target is not None]
        replies = [""] * len(todo)
        if self.write_questions and todo:
            prompts = [
                self.question_template.format(dialogue=dialogue_lines(ctx.dialogues[i]), object=target)
                for i, target in todo
            ]
            replies = self.llm.chat([user_turn(p) for p in prompts], self.max_new_tokens)
        questions: list[str | None] = [None] * len(ctx.dialogues)
        for (i, target), reply in zip(todo, replies, strict=True):
            dialogue = ctx.dialogues[i]
            asked = {q.lower() for q in dialogue.asked}
            written = [q for q in reply_questions(reply) if q.lower() not in asked]
            if self.write_questions and not written:
                self.counts["question_fallbacks"] += 1
            question = written[0] if written else OBJECT_QUESTION.format(object=target)
            self._asked[(dialogue.initial, question)] = target
            questions[i] = question
        return questions
