"""The LLM witness: the paper's prompt filled correctly, the short-question rule, reply trimming, a tiny real model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from ireid.answerer import LLMWitness, build_witness, fill_prompt, load_prompt, second_person, witness_conversation
from ireid.answerer.llm_witness import first_line
from ireid.core.answers import UNKNOWN
from ireid.core.llm import ChatLLM, Message, load_chat_llm
from ireid.core.protocols import Witness
from ireid.core.synthetic import world
from ireid.core.tokenizer import train_bpe_tokenizer

MEMORY = "I saw a man in a red top. He wore no hat. I saw him on a street."
QUESTION = "Was he wearing a cap?"


class ScriptedLLM:
    """Replies from a script and records what it was asked."""

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)
        self.calls: list[tuple[list[list[Message]], int]] = []

    def chat(self, conversations: Sequence[Sequence[Message]], max_new_tokens: int) -> list[str]:
        self.calls.append(([list(c) for c in conversations], max_new_tokens))
        return self.replies[: len(conversations)]


def test_the_prompt_file_is_the_papers_instruction_without_its_citation() -> None:
    prompt = load_prompt()
    assert prompt.startswith("Imagine you are a witness who has seen one person")
    assert "LLaVA-ReID" not in prompt and not prompt.startswith("#")
    for line in (
        "Answer the question only according to what you remember.",
        "1. Answer directly in a complete sentence",
        "2. Avoid giving answers that are just ‘Yes’, ‘No’, or a single word or phrase.",
        "3. If an entity or attribute is not included in your memory, assume the person does not possess it.",
    ):
        assert line in prompt
    assert prompt.endswith("Question: <question>\n\nAnswer:")


def test_filled_prompt_tells_the_memory_in_the_second_person() -> None:
    assert second_person("I saw a man. I saw him on a street. I remember it.") == (
        "You saw a man. You saw him on a street. I remember it."
    )
    template = "Memory:\n<context>\nQ: <question>\nA:"
    assert fill_prompt(template, f" {QUESTION} ", MEMORY) == (
        "Memory:\nYou saw a man in a red top. He wore no hat. You saw him on a street.\nQ: Was he wearing a cap?\nA:"
    )
    filled = fill_prompt(load_prompt(), QUESTION, MEMORY)
    assert (
        "this is what you remember:\n\nYou saw a man in a red top. He wore no hat. You saw him on a street.\n\n"
        in filled
    )
    assert filled.endswith("Question: Was he wearing a cap?\n\nAnswer:") and "I saw" not in filled


def test_conversation_layouts() -> None:
    prompt = load_prompt()
    (user,) = witness_conversation(prompt, QUESTION, MEMORY)
    assert user == {"role": "user", "content": fill_prompt(prompt, QUESTION, MEMORY)}
    system, question = witness_conversation(prompt, QUESTION, MEMORY, layout="system")
    assert system["role"] == "system" and "You saw a man in a red top." in system["content"]
    assert system["content"].endswith("assume the person does not possess it.")
    assert question == {"role": "user", "content": "Question: Was he wearing a cap?\n\nAnswer:"}


def test_short_questions_skip_the_model_and_replies_keep_their_first_line() -> None:
    llm = ScriptedLLM(["Answer: No, he wore no hat.\nHe also had no bag.", "  \n\nHe was on a street."])
    witness = LLMWitness(llm, max_new_tokens=7)
    assert isinstance(witness, Witness)
    questions = ["Hat?", QUESTION, "Where did you see him?"]
    assert witness.answer(questions, [MEMORY] * 3) == [UNKNOWN, "No, he wore no hat.", "He was on a street."]
    ((conversations, cap),) = llm.calls
    assert cap == 7 and [c[0]["content"].rsplit("Question: ", 1)[1] for c in conversations] == [
        "Was he wearing a cap?\n\nAnswer:",
        "Where did you see him?\n\nAnswer:",
    ]
    assert LLMWitness(ScriptedLLM([])).answer(["Hat?"], [MEMORY]) == [UNKNOWN]  # no model call at all
    assert first_line("") == UNKNOWN


def test_bad_arguments_are_errors() -> None:
    with pytest.raises(ValueError, match="<question>"):
        LLMWitness(ScriptedLLM([]), prompt="Memory: <context>")
    with pytest.raises(ValueError, match="max_new_tokens"):
        LLMWitness(ScriptedLLM([]), max_new_tokens=0)
    with pytest.raises(ValueError, match="1 questions but 2 memories"):
        LLMWitness(ScriptedLLM([])).answer([QUESTION], [MEMORY, MEMORY])


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    records = world.world_records(0, world.plan_identities(0, 12, 0, 0), images_per_id=1)
    texts = [load_prompt()] * 4 + [r.fine_description for r in records] + [qa.question for r in records for qa in r.qas]
    out = tmp_path_factory.mktemp("witness-tok")
    train_bpe_tokenizer(texts, out, vocab_size=600)
    return out


def test_tiny_model_answers_every_question_within_the_token_cap(
    tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm = load_chat_llm("tiny", tokenizer_dir=tokenizer_dir)
    generate, new_tokens = llm.model.generate, []

    def counting_generate(input_ids, **kwargs):  # records how many tokens each call adds
        out = generate(input_ids=input_ids, **kwargs)
        new_tokens.append(out.shape[1] - input_ids.shape[1])
        return out

    monkeypatch.setattr(llm.model, "generate", counting_generate)
    replies: list[str] = []

    class Spy:
        def chat(self, conversations: Sequence[Sequence[Message]], max_new_tokens: int) -> list[str]:
            replies.extend(llm.chat(conversations, max_new_tokens))
            return replies

    assert isinstance(Spy(), ChatLLM)
    questions = [QUESTION, "Where did you see him?", "Short?", "What colour was his top?"]
    answers = LLMWitness(Spy(), max_new_tokens=3).answer(questions, [MEMORY] * 4)
    assert len(answers) == 4 and all(isinstance(a, str) and a for a in answers)
    assert answers[2] == UNKNOWN
    assert [a for i, a in enumerate(answers) if i != 2] == [first_line(r) for r in replies]
    assert new_tokens and max(new_tokens) <= 3  # every reply stays within the cap

    built = build_witness("tiny", tokenizer_dir=tokenizer_dir, max_new_tokens=3, batch_size=2)
    assert isinstance(built, LLMWitness) and built.llm.batch_size == 2
    assert built.answer(questions, [MEMORY] * 4) == answers  # the same seed-0 tiny model, greedy
