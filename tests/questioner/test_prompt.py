"""The prompt follows LLaVA-ReID Table 9 character for character; instruction variants are drawn reproducibly."""

from __future__ import annotations

import pytest

from ireid.core.protocols import Dialogue
from ireid.questioner.prompt import InstructionChooser, build_prompt, instructions, system_message


def test_the_three_table_9_variants_are_read_without_the_citation() -> None:
    variants = instructions()
    assert len(variants) == 3
    assert variants[0].startswith("Based on this information:\n[Candidate Person] The closest match")
    assert variants[2].startswith("The following context applies:\n[Candidate Person] The individual who best fits")
    assert all(v.splitlines()[-1].startswith("Generate a question") for v in variants)
    assert not any(v.startswith("#") for v in variants) and system_message() == "You are a helpful assistant."


def test_two_turn_dialogue_with_four_images_renders_exactly() -> None:
    dialogue = Dialogue("I saw a man in a red top.")
    dialogue.ask("Was he wearing a hat?", "No, he was not wearing a hat.")
    dialogue.ask("What colour were his shoes?", "His shoes were black.")
    expected = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n"
        "[Candidate Person] <image>\n[Similar Persons]#0 <image>\n#1 <image>\n#2 <image>\n"
        "[Conversation] Witness: I saw a man in a red top."
        "You: Was he wearing a hat?\n Witness: No, he was not wearing a hat.\n"
        "You: What colour were his shoes?\n Witness: His shoes were black.\n"
        "\n" + instructions()[1] + "<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert build_prompt(dialogue, 4, variant=1, system=system_message()) == expected


def test_without_system_message_and_a_single_image() -> None:
    prompt = build_prompt(Dialogue("A woman."), 1)
    assert prompt == (
        "<|im_start|>user\n[Candidate Person] <image>\n[Similar Persons][Conversation] Witness: A woman.\n"
        + instructions()[0]
        + "<|im_end|>\n<|im_start|>assistant\n"
    )
    with pytest.raises(ValueError, match="variant 3"):
        build_prompt(Dialogue("A woman."), 1, variant=3)


def test_training_draws_every_variant_reproducibly_and_inference_keeps_one() -> None:
    first, second = InstructionChooser(seed=7), InstructionChooser(seed=7)
    sequence = [first() for _ in range(60)]
    assert sequence == [second() for _ in range(60)] and set(sequence) == {0, 1, 2}
    fixed = InstructionChooser(fixed=2, seed=7)
    assert {fixed() for _ in range(10)} == {2}
