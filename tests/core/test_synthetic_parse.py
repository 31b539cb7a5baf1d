"""Reading the synthetic world's texts back into attributes: every template, colours by context, free questions."""

from __future__ import annotations

from pathlib import Path

import pytest

from ireid.core.loader import load_records
from ireid.core.records import Record
from ireid.core.synthetic import world
from ireid.core.synthetic.text import mentioned_attributes as initial_mentions
from ireid.core.vocabulary.attributes import ATTRIBUTES
from ireid.core.vocabulary.parse import ParsedQuestion, mentioned_attributes, parse_description, parse_question


@pytest.fixture(scope="module")
def generated() -> list[Record]:
    """300 identities' texts (one record each, no images) beside the rendered tiny world."""
    return world.world_records(7, world.plan_identities(7, 240, 0, 60), images_per_id=1)


@pytest.fixture(scope="module")
def all_records(tiny_world: Path, generated: list[Record]) -> list[Record]:
    rendered = [r for split in ("train", "val", "test") for r in load_records(tiny_world, split)]
    return rendered + generated


def option_values(record_qa_options: tuple[str, ...], attribute: str) -> tuple[str, ...]:
    by_phrase = {ATTRIBUTES[attribute].phrase(v): v for v in ATTRIBUTES[attribute].values}
    return tuple(by_phrase[o] for o in record_qa_options)


# ------------------------------------------------------------------------------------------------- descriptions


def test_fine_description_states_every_attribute(all_records: list[Record]) -> None:
    wrong = [r.fine_description for r in all_records if parse_description(r.fine_description) != r.attributes]
    assert not wrong, wrong[:3]


def test_initial_description_states_exactly_what_it_mentions(all_records: list[Record]) -> None:
    for record in all_records:
        parsed = parse_description(record.initial_description)
        assert set(parsed) == set(initial_mentions(record)), record.initial_description
        assert parsed.items() <= record.attributes.items(), record.initial_description


def test_sub_captions_and_annotated_answers_state_their_attribute(all_records: list[Record]) -> None:
    for record in all_records:
        for text in record.sub_captions:
            assert parse_description(text).items() <= record.attributes.items(), text
        for qa in record.qas:
            parsed = parse_description(qa.answer)
            assert parsed.items() <= record.attributes.items() and qa.attribute in parsed, qa.answer


def test_dialogue_text_accumulates_and_later_statements_win() -> None:
    text = "I saw a woman in a red top. His bottoms were blue. No, her bottoms were beige. She wore no hat."
    assert parse_description(text) == {"gender": "woman", "upper_colour": "red", "lower_colour": "beige", "hat": "none"}
    assert mentioned_attributes(text) == {"gender", "upper_colour", "lower_colour", "hat"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "She looked young and had long blonde hair.",
            {"age": "young", "hair_length": "long", "hair_colour": "blonde"},
        ),
        (
            "His top was a striped red T-shirt with no logo.",
            {"upper_pattern": "striped", "upper_colour": "red", "upper_type": "t-shirt", "upper_logo": "no"},
        ),
        ("Below the waist she had on a grey short skirt.", {"lower_colour": "grey", "lower_type": "short skirt"}),
        (
            "The man's top was red and his trousers were blue.",
            {"upper_colour": "red", "lower_type": "trousers", "lower_colour": "blue"},
        ),
        ("He wore blue on his lower body.", {"lower_colour": "blue"}),
        ("The clothes below his waist were grey.", {"lower_colour": "grey"}),
        ("On his feet he had red sneakers.", {"shoes_colour": "red", "shoes_type": "sneakers"}),
        ("Her hair was red.", {"hair_colour": "red"}),
        ("It was orange.", {"upper_colour": "orange"}),  # only a top can be orange
        ("It was red.", {}),  # hair, top, bottoms or shoes: unresolved
        ("She wore a long skirt.", {"lower_type": "long skirt"}),  # not long hair
    ],
)
def test_colours_and_lengths_resolve_by_the_garment_they_describe(text: str, expected: dict[str, str]) -> None:
    parsed = parse_description(text)
    parsed.pop("gender", None)
    assert parsed == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("He was holding nothing.", {"held_item": "none"}),
        ("She had nothing in her hands.", {"held_item": "none"}),
        ("Her hands were empty.", {"held_item": "none"}),
        ("He wasn't holding anything.", {"held_item": "none"}),
        ("His top had nothing printed on it.", {"upper_logo": "no"}),
        ("There was a logo on her top.", {"upper_logo": "yes"}),
        ("He was not wearing a hat and had a phone.", {"hat": "none", "held_item": "phone"}),
        ("She didn't wear glasses.", {"glasses": "none"}),
        ("Yes, she was bare-headed.", {"hat": "none"}),
        ("No, he wasn't wearing a cap, he wore a beanie.", {"hat": "beanie"}),
        ("He did not wear a cap.", {}),  # a denied value says nothing about which hat, if any
        ("She carried no bag.", {"bag": "none"}),
    ],
)
def test_absences_and_negations(text: str, expected: dict[str, str]) -> None:
    parsed = parse_description(text)
    parsed.pop("gender", None)
    assert parsed == expected


def test_gender_from_words_then_pronouns_and_questions_skipped() -> None:
    assert parse_description("His shoes were black.") == {"gender": "man", "shoes_colour": "black"}
    assert parse_description("I saw her on a street.") == {"gender": "woman", "scene": "street"}
    assert parse_description("The person wore a cap.") == {"hat": "cap"}
    assert parse_description("Was he wearing a cap? How long was her hair?") == {}
    assert parse_description("I don't know.") == {}


# ---------------------------------------------------------------------------------------------------- questions


def test_every_template_question_is_read_with_its_assumption_and_options(all_records: list[Record]) -> None:
    """All annotated QAs: attribute, yes/no assumption (right iff the answer says "Yes"), options in order."""
    checked, wrong = 0, []
    for record in all_records:
        for qa in record.qas:
            parsed = parse_question(qa.question)
            truth = record.attributes[qa.attribute]
            ok = parsed is not None and parsed.attribute == qa.attribute
            if ok and qa.qtype == "yes_no":
                ok = parsed.assumed is not None and (parsed.assumed == truth) == qa.answer.startswith("Yes")
            if ok and qa.qtype == "multiple_choice":
                ok = parsed.options == option_values(qa.options, qa.attribute) and parsed.assumed is None
            if ok and qa.qtype == "descriptive":
                ok = parsed.assumed is None and not parsed.options
            checked += 1
            if not ok:
                wrong.append((qa.question, parsed))
    assert checked > 4000
    assert not wrong, wrong[:5]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What colour were his trousers?", ParsedQuestion("lower_colour")),
        ("What color were her sneakers?", ParsedQuestion("shoes_colour")),
        ("Did she carry any bag?", ParsedQuestion("bag")),
        ("Was the man wearing glasses?", ParsedQuestion("glasses")),
        ("What was on his head?", ParsedQuestion("hat")),
        ("What was she holding in her hand?", ParsedQuestion("held_item")),
        ("What did the person wear on their legs?", ParsedQuestion("lower_type")),
        ("In what kind of place did you see the person?", ParsedQuestion("scene")),
        ("Any logo on his shirt?", ParsedQuestion("upper_logo")),
        ("Could you describe his shoes?", ParsedQuestion("shoes_type")),
        ("How old was the person?", ParsedQuestion("age")),
        ("Is the person male or female?", ParsedQuestion("gender")),
        ("Was the person a man?", ParsedQuestion("gender", assumed="man")),
        ("Were his trousers blue?", ParsedQuestion("lower_colour", assumed="blue")),
        ("Did they have long hair?", ParsedQuestion("hair_length", assumed="long")),
        ("Was he wearing jeans?", ParsedQuestion("lower_type", assumed="trousers")),
        ("Was he carrying an umbrella?", ParsedQuestion("held_item", assumed="umbrella")),
        ("Do you remember whether he wore a cap?", ParsedQuestion("hat", assumed="cap")),
        ("I see. And was she wearing sunglasses?", ParsedQuestion("glasses", assumed="sunglasses")),
        ("Were his hands empty?", ParsedQuestion("held_item", assumed="none")),
        ("Was he old?", ParsedQuestion("age", assumed="elderly")),
        (
            "What colour was his jacket? A) red B) blue C) green D) black",
            ParsedQuestion("upper_colour", options=("red", "blue", "green", "black")),
        ),
        (
            "Which bag? A) a backpack, B) a handbag, or C) no bag?",
            ParsedQuestion("bag", options=("backpack", "handbag", "none")),
        ),
    ],
)
def test_free_form_questions(question: str, expected: ParsedQuestion) -> None:
    assert parse_question(question) == expected


@pytest.mark.parametrize(
    "question", ["Hello there, how are you?", "What is your name?", "What was the man wearing?", "Was it sunny?", ""]
)
def test_questions_about_nothing_known_are_none(question: str) -> None:
    assert parse_question(question) is None
