"""Reading the pedestrian vocabulary's language back into attribute values.

Every text made from the vocabulary says a value with its `phrase` (`attributes.py`), so descriptions, witness
answers and questions can be mapped back to attributes: the evaluation skips questions a dialogue already
answers and scores generated questions by what they ask, and the rule-based witness reads its memory and the
question.

Colours are shared by hair, top, bottoms and shoes, so a colour belongs to the garment word it precedes
("long blonde hair", "a striped red T-shirt") or, failing that, to the garment its clause is about ("His top was
red.", "blue on his lower body"). Negated words ("not", "without", "n't") up to the end of their clause are not
stated; a negated generic noun ("without a bag", "didn't wear glasses") states the absence. Questions are read by
keyword cues per attribute ("colour", "head", "hands", "where") as well as by the values they name, so freely
phrased questions are recognised too, not only the world's templates.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ireid.core.vocabulary.attributes import ATTRIBUTE_NAMES, ATTRIBUTES, bare

# Garments a colour can describe, and the attribute the colour then gives.
COLOUR_OF = {"hair": "hair_colour", "upper": "upper_colour", "lower": "lower_colour", "shoes": "shoes_colour"}
_GARMENT_OF_TYPE = {"upper_type": "upper", "lower_type": "lower", "shoes_type": "shoes"}


@dataclass(frozen=True)
class ParsedQuestion:
    """What a question asks: the attribute, the value a yes/no question assumes, a multiple choice's options."""

    attribute: str
    assumed: str | None = None
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Word:
    """A lexicon entry.

    kind: "value" (names `value` of `attribute`), "colour" / "length" (a value whose attribute depends on the
    garment it describes), "noun" (a garment word, for colours to attach to), "generic" (a hat, a bag: states the
    absence when negated, `value` when not), "nothing" / "anything" (held item or logo, by the sentence's words).
    `garment` is set for words a colour can describe; `modifier` for adjectives that may precede a garment noun.
    """

    kind: str
    attribute: str | None = None
    value: str | None = None
    garment: str | None = None
    modifier: bool = False


def _surface(phrase: str) -> str:
    """The words to look for: a place without its preposition ("on a street" -> "street"), nouns without article."""
    return bare(re.sub(r"^(?:on|in|at) ", "", phrase.lower()))


def _vocabulary_words() -> dict[str, _Word]:
    words: dict[str, _Word] = {}
    for name, spec in ATTRIBUTES.items():
        if name in COLOUR_OF.values() or name == "hair_length":
            continue
        for value in spec.values:
            garment, modifier = _GARMENT_OF_TYPE.get(name), name == "upper_pattern"
            words[re.escape(_surface(spec.phrase(value)))] = _Word("value", name, value, garment, modifier)
    for colour in sorted({v for name in COLOUR_OF.values() for v in ATTRIBUTES[name].values}):
        words[colour] = _Word("colour", value=colour, modifier=True)
    for length in ATTRIBUTES["hair_length"].values:
        words[re.escape(length)] = _Word("length", "hair_length", length, modifier=True)
    return words


# Words beyond the vocabulary's phrases: synonyms, garment nouns, generic nouns (patterns; case-insensitive).
_EXTRA_WORDS: dict[str, _Word] = {
    r"t[- ]?shirts?": _Word("value", "upper_type", "t-shirt", "upper"),
    r"button[- ]?(?:up|down) shirts?": _Word("value", "upper_type", "button-up shirt", "upper"),
    r"pants|jeans|slacks": _Word("value", "lower_type", "trousers", "lower"),
    r"trainers": _Word("value", "shoes_type", "sneakers", "shoes"),
    r"spectacles": _Word("value", "glasses", "eyeglasses"),
    r"(?:mobile |cell |smart ?)phone": _Word("value", "held_item", "phone"),
    r"mall": _Word("value", "scene", "shopping mall"),
    r"(?:railway |subway |metro )?station": _Word("value", "scene", "train station"),
    r"middle aged": _Word("value", "age", "middle-aged"),
    r"old": _Word("value", "age", "elderly"),
    r"male|gentleman|guy": _Word("value", "gender", "man"),
    r"female|lady": _Word("value", "gender", "woman"),
    r"gray": _Word("colour", value="grey", modifier=True),
    r"blond": _Word("colour", value="blonde", modifier=True),
    r"bare[- ]?headed": _Word("value", "hat", "none"),
    r"empty[- ]handed|hands?\s+(?:(?:were|was)\s+)?empty|empty\s+hands?": _Word("value", "held_item", "none"),
    r"hair": _Word("noun", garment="hair"),
    r"top|upper body|upper garment|shirts?|blouse": _Word("noun", garment="upper"),
    r"bottoms|lower body|lower garment|waist|skirts?|legs?": _Word("noun", garment="lower"),
    r"shoes?|footwear|feet|foot": _Word("noun", garment="shoes"),
    r"hats?|headwear": _Word("generic", "hat"),
    r"bags?": _Word("generic", "bag"),
    r"glasses|eyewear": _Word("generic", "glasses"),
    r"logo": _Word("generic", "upper_logo", "yes"),
    r"nothing": _Word("nothing"),
    r"anything": _Word("anything"),
}
_LEXICON = _vocabulary_words() | _EXTRA_WORDS
# Longer patterns first, so "short skirt" wins over "short" and "sun hat" over "hat" at the same position.
_PATTERNS = sorted(_LEXICON, key=len, reverse=True)
_WORD_RE = re.compile(
    r"(?<![\w-])(?:" + "|".join(f"(?P<w{i}>{p})" for i, p in enumerate(_PATTERNS)) + r")(?![\w-])", re.IGNORECASE
)
_NEGATION_RE = re.compile(r"(?<![\w-])(?:not|never|without|no|neither|nor|free of)(?![\w-])|n't", re.IGNORECASE)
_CLAUSE_BREAK_RE = re.compile(
    r"[,;:()]|(?<![\w-])(?:and|but|while|whereas|though|although|however)(?![\w-])", re.IGNORECASE
)
_ADJACENT_RE = re.compile(r"\s*,?\s*(?:and\s+)?")
_SENTENCE_RE = re.compile(r"[^.!?]+(?:[.!?]+|$)")
_HELD_CONTEXT_RE = re.compile(r"\bhold|\bheld\b|\bhands?\b", re.IGNORECASE)
_LOGO_CONTEXT_RE = re.compile(r"\bprint|\blogo|\bfront\b", re.IGNORECASE)
_PRONOUN_RE = re.compile(r"\b(?:(he|him|his|himself)|(she|her|hers|herself))\b", re.IGNORECASE)


@dataclass(frozen=True)
class _Mention:
    start: int
    end: int
    word: _Word
    clause: int
    negated: bool


@dataclass(frozen=True)
class _Fact:
    attribute: str
    value: str
    mention: int  # index of the mention that states it
    describes: int | None = None  # index of the garment mention a modifier attaches to


def _mentions(sentence: str) -> list[_Mention]:
    breaks = [m.start() for m in _CLAUSE_BREAK_RE.finditer(sentence)]
    negations = [m.start() for m in _NEGATION_RE.finditer(sentence)]

    def clause(position: int) -> int:
        return sum(b < position for b in breaks)

    mentions = []
    for match in _WORD_RE.finditer(sentence):
        word = _LEXICON[_PATTERNS[int(match.lastgroup[1:])]]
        where = clause(match.start())
        negated = any(n < match.start() and clause(n) == where for n in negations)
        mentions.append(_Mention(match.start(), match.end(), word, where, negated))
    return mentions


def _described_garment(mentions: list[_Mention], i: int, sentence: str) -> int | None:
    """Index of the garment mention that modifier `i` describes, or None."""
    j = i
    while j + 1 < len(mentions) and _ADJACENT_RE.fullmatch(sentence[mentions[j].end : mentions[j + 1].start]):
        j += 1
        if mentions[j].word.garment:
            return j
        if not mentions[j].word.modifier:
            break
    clause = mentions[i].clause
    before = [k for k in range(i - 1, -1, -1) if mentions[k].word.garment]
    after = [k for k in range(i + 1, len(mentions)) if mentions[k].word.garment]
    same_clause = [k for k in (*before, *after) if mentions[k].clause == clause]
    return next(iter((*same_clause, *before, *after)), None)


def _colour_attribute(colour: str, garment: str | None) -> str | None:
    if garment is not None:
        attribute = COLOUR_OF.get(garment)
        return attribute if attribute and colour in ATTRIBUTES[attribute].values else None
    owners = [name for name in COLOUR_OF.values() if colour in ATTRIBUTES[name].values]
    return owners[0] if len(owners) == 1 else None  # "blonde" is hair, "orange" a top, whatever the sentence


def _absent(attribute: str) -> str:
    return ATTRIBUTES[attribute].absent


def _facts(sentence: str) -> tuple[list[_Fact], list[_Mention]]:
    """What one sentence states, in order of mention."""
    mentions = _mentions(sentence)
    facts = []
    for i, mention in enumerate(mentions):
        word = mention.word
        if word.kind == "nothing" or (word.kind == "anything" and mention.negated):
            if _HELD_CONTEXT_RE.search(sentence):
                facts.append(_Fact("held_item", _absent("held_item"), i))
            elif _LOGO_CONTEXT_RE.search(sentence):
                facts.append(_Fact("upper_logo", _absent("upper_logo"), i))
        elif word.kind == "generic":
            if mention.negated:
                facts.append(_Fact(word.attribute, _absent(word.attribute), i))
            elif word.value is not None:
                facts.append(_Fact(word.attribute, word.value, i))
        elif mention.negated:
            continue
        elif word.kind == "value":
            garment = _described_garment(mentions, i, sentence) if word.modifier else None
            facts.append(_Fact(word.attribute, word.value, i, garment))
        elif word.kind in ("colour", "length"):
            garment = _described_garment(mentions, i, sentence)
            kind = None if garment is None else mentions[garment].word.garment
            if word.kind == "colour":
                attribute = _colour_attribute(word.value, kind)
            else:
                attribute = "hair_length" if kind == "hair" else None
            if attribute is not None:
                facts.append(_Fact(attribute, word.value, i, garment))
    return facts, mentions


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_RE.findall(text) if s.strip()]


def _pronoun_gender(text: str) -> str | None:
    match = _PRONOUN_RE.search(text)
    if match is None:
        return None
    return "man" if match.group(1) else "woman"


def parse_description(text: str) -> dict[str, str]:
    """attribute -> value for everything the text states (questions in it are skipped; a later statement wins).

    Gender comes from "man"/"woman" words, else from the first he/she pronoun.
    """
    found: dict[str, str] = {}
    statements = [s for s in _sentences(text) if not s.endswith("?")]
    for sentence in statements:
        for fact in _facts(sentence)[0]:
            found[fact.attribute] = fact.value
    if "gender" not in found and (gender := _pronoun_gender(" ".join(statements))) is not None:
        found["gender"] = gender
    return {name: found[name] for name in ATTRIBUTE_NAMES if name in found}


def mentioned_attributes(text: str) -> set[str]:
    return set(parse_description(text))


# ---------------------------------------------------------------------------------------------------- questions

_COLOUR_CUE = "colour"
# Cues in priority order: aspects of a garment first (logo, pattern, colour, length), then what a question is
# about when it names no value ("What was on his head?"). `_COLOUR_CUE` resolves to the colour of the first
# garment the question names.
_CUES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (attribute, re.compile(pattern, re.IGNORECASE))
    for attribute, pattern in (
        ("upper_logo", r"\blogo|\bprint|\bfront of\b|\bgraphic"),
        ("upper_pattern", r"\bpattern"),
        (_COLOUR_CUE, r"\bcolou?rs?\b|\bshade\b"),
        ("hair_length", r"\bhow long\b.*\bhair|\blength\b.*\bhair|\bhair\b.*\blength\b"),
        ("age", r"\bhow old\b|(?<![\w-])age\b"),
        ("scene", r"\bwhere\b|\bplace\b|\blocation\b|\bscene\b|\bsetting\b|\bsurroundings\b"),
        ("gender", r"\bgender\b|\bsex\b|\b(?:man|male|woman|female) or (?:a )?(?:man|male|woman|female)\b"),
        ("gender", r"\b(?:was|is)\s+(?:it|that|this|the person|this person|he|she|they)\s+(?:a\s+)?(?:man|woman)\b"),
        ("hat", r"\bhead|\bhats?\b|\bheadgear\b"),
        ("glasses", r"\beyes?\b|eyewear|glasses|spectacles"),
        ("held_item", r"\bhands?\b|\bhold|\bheld\b"),
        ("bag", r"\bbags?\b|\bcarr(?:y|ying|ied)\b|backpack|handbag"),
        ("shoes_type", r"\bfeet\b|\bfoot\b|\bshoes?\b|\bfootwear\b"),
        ("lower_type", r"\blower (?:body|garment)|\bbottoms\b|\bwaist\b|\btrousers\b|\bpants\b|\bskirt|\blegs?\b"),
        ("upper_type", r"\bupper (?:body|garment)|\btop\b|shirt\b|\bgarment\b|\bclothes\b|\bclothing\b"),
        ("hair_colour", r"\bhair\b"),
    )
)
_YES_NO_START_RE = re.compile(
    r"^(?:(?:and|so|also|ok|okay|well|then)\b[\s,]*)*(?:was|were|did|does|do|is|are|had|has|have|would|will|could|can)\b"
    r"(?!\s+you\s+(?:tell|describe|recall|give|explain|remember\s+(?:what|which|how|where)))",
    re.IGNORECASE,
)
_OPTION_RE = re.compile(r"(?:(?<=\s)|^)\(?([A-H])\)\s*")


def _cue(stem: str, mentions: list[_Mention]) -> str | None:
    for attribute, pattern in _CUES:
        if not pattern.search(stem):
            continue
        if attribute != _COLOUR_CUE:
            return attribute
        garment = next((m.word.garment for m in mentions if m.word.garment), None)
        if garment is not None:
            return COLOUR_OF[garment]
    return None


def _asked_sentence(stem: str) -> str:
    """The last sentence ending in "?" ("I see. Was she wearing a cap?"), else the whole stem."""
    asked = [s for s in _sentences(stem) if s.endswith("?")]
    return asked[-1] if asked else stem


def _stem_reading(sentence: str) -> tuple[str | None, list[_Fact]]:
    """The sentence's cue attribute and the facts it names, garments described by a modifier left out
    ("Were his trousers blue?" names blue bottoms, not trousers)."""
    facts, mentions = _facts(sentence)
    described = {f.describes for f in facts if f.describes is not None}
    facts = [f for f in facts if f.mention not in described]
    return _cue(sentence, mentions), facts


def _split_options(question: str) -> tuple[str, list[str]]:
    marks = list(_OPTION_RE.finditer(question))
    letters = "".join(m.group(1) for m in marks)
    if len(marks) < 2 or not "ABCDEFGH".startswith(letters):
        return question, []
    ends = [m.start() for m in marks[1:]] + [len(question)]
    options = [question[m.end() : end] for m, end in zip(marks, ends, strict=True)]
    options = [re.sub(r"(?:[\s,;.?]|\bor\b)+$", "", o).strip() for o in options]
    return question[: marks[0].start()].strip(), options


def _option_readings(option: str) -> dict[str, str]:
    """attribute -> value for every reading of one option ("red" may be any colour attribute)."""
    text = bare(option.lower().strip())
    exact = {
        name: value
        for name, spec in ATTRIBUTES.items()
        for value in spec.values
        if bare(spec.phrase(value).lower()) == text
    }
    if exact:
        return exact
    readings: dict[str, str] = {}
    for fact in _facts(option)[0]:
        readings.setdefault(fact.attribute, fact.value)
    for mention in _mentions(option):
        if mention.word.kind == "colour" and not mention.negated:
            for name in COLOUR_OF.values():
                if mention.word.value in ATTRIBUTES[name].values:
                    readings.setdefault(name, mention.word.value)
    return readings


def _multiple_choice(stem_attribute: str | None, options: list[str]) -> ParsedQuestion | None:
    readings = [_option_readings(o) for o in options]
    common = [name for name in ATTRIBUTE_NAMES if all(name in r for r in readings)]
    if not common:
        return None
    attribute = stem_attribute if stem_attribute in common else common[0]
    return ParsedQuestion(attribute, options=tuple(r[attribute] for r in readings))


@functools.lru_cache(maxsize=1 << 16)  # a bank's questions recur every round; the result is frozen
def parse_question(question: str) -> ParsedQuestion | None:
    """Which attribute a question asks about (None when none can be identified).

    Yes/no questions (starting "Was", "Did", ...) carry the value they assume when they name one ("Was he
    bare-headed?" -> hat "none"); questions with options "A) ... B) ..." carry the option values.
    """
    stem, options = _split_options(question.strip())
    stem = _asked_sentence(stem)
    cue, facts = _stem_reading(stem)
    stated = [f for f in facts if f.attribute != "gender" or cue == "gender"]
    attribute = cue or next((f.attribute for f in stated), None)
    if options and (chosen := _multiple_choice(attribute, options)) is not None:
        return chosen
    if not _YES_NO_START_RE.match(stem):
        return ParsedQuestion(attribute) if attribute else None
    if stated and cue not in {f.attribute for f in stated}:
        attribute = stated[0].attribute
    if attribute is None:
        return None
    assumed = {f.value for f in stated if f.attribute == attribute}
    return ParsedQuestion(attribute, assumed=assumed.pop() if len(assumed) == 1 else None)


def covered_attributes(text: str, asked: Iterable[str] = ()) -> set[str]:
    """Attributes a dialogue's `text` states or its `asked` questions already asked about: not worth asking again."""
    return mentioned_attributes(text) | {parsed.attribute for q in asked if (parsed := parse_question(q)) is not None}


def stated_truth(text: str, truth: Mapping[str, str]) -> bool | None:
    """Whether every attribute value the text states is the true one (a synthetic world's annotations); None when
    it states none. How generated data (RDA groups, Interactive-PEDES sub-captions and answers) is checked."""
    stated = parse_description(text)
    if not stated:
        return None
    return all(truth.get(attribute) == value for attribute, value in stated.items())
