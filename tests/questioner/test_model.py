"""The questioner's embeddings, labels, loss and generation on a tiny LLaVA-OneVision."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ireid.core.protocols import Dialogue
from ireid.core.vocabulary.asking import open_questions
from ireid.questioner.encoding import IGNORE
from ireid.questioner.model import QuestionerModel, choose_question, is_new


def people(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (32, 64), (40 * i, 200 - 30 * i, 90)) for i in range(n)]


def dialogues() -> list[Dialogue]:
    first, second = Dialogue("I saw a man in a red top."), Dialogue("A woman with long hair.")
    second.ask("Was she wearing a hat?", "No, she was not wearing a hat.")
    return [first, second]


def test_labels_cover_exactly_the_question_and_its_end_token(tiny_questioner: QuestionerModel) -> None:
    q = tiny_questioner
    question = "What colour were his shoes?"
    (encoded,) = q.encode(dialogues()[:1], [4], [0], [question])
    scored = [i for i, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != IGNORE]
    assert scored == q.tokenizer(question, add_special_tokens=False)["input_ids"] + [q.encoder.end_id]
    assert encoded.labels[: -len(scored)] == [IGNORE] * (len(encoded.labels) - len(scored))
    assert encoded.input_ids.count(q.encoder.image_token_id) == 4 * q.tokens_per_image


def test_loss_is_the_cross_entropy_of_the_target_tokens(tiny_questioner: QuestionerModel) -> None:
    q = tiny_questioner
    batch, images = dialogues(), [people(4), people(2)]
    targets = ["Was he carrying a bag?", "What colour were her shoes?"]
    loss, tokens = q.nll(batch, images, targets, [0, 2])
    encoded = q.encode(batch, [4, 2], [0, 2], targets)
    embeds, mask, labels = q.embed(encoded, q.encode_images(images))
    with torch.no_grad():
        logits = q.hf(inputs_embeds=embeds, attention_mask=mask).logits
    manual, count = [], 0
    for row in range(2):
        for position in range(labels.shape[1] - 1):
            target = int(labels[row, position + 1])
            if target != IGNORE:
                manual.append(F.cross_entropy(logits[row, position], torch.tensor(target), reduction="none"))
                count += 1
    assert tokens == count == sum(len(q.tokenizer(t)["input_ids"]) + 1 for t in targets)
    assert torch.allclose(loss, torch.stack(manual).mean(), atol=1e-5)


def test_image_tokens_sit_in_their_slots_scaled_by_their_weight(tiny_questioner: QuestionerModel) -> None:
    q = tiny_questioner
    images = [people(3)]
    weights = [torch.tensor([1.0, 0.5, 0.0])]
    features = q.encode_images(images)
    encoded = q.encode(dialogues()[:1], [3], [0])
    embeds, _, _ = q.embed(encoded, q.encode_images(images, weights))
    slots = torch.tensor(encoded[0].input_ids) == q.encoder.image_token_id
    placed = embeds[0, slots].view(3, q.tokens_per_image, -1)
    assert torch.allclose(placed, features * torch.tensor([1.0, 0.5, 0.0]).view(3, 1, 1))
    text = q.hf.get_input_embeddings()(torch.tensor(encoded[0].input_ids))
    assert torch.equal(embeds[0, ~slots], text[~slots])


def test_generation_is_capped_and_batching_with_left_padding_changes_nothing(tiny_questioner: QuestionerModel) -> None:
    q = tiny_questioner
    batch, images = dialogues(), [people(4), people(2)]
    capped = q.generate_ids(batch, images, max_new_tokens=3)
    assert all(len(row) <= 3 for row in capped)
    together = q.generate(batch, images, max_new_tokens=6)
    alone = [q.generate([d], [im], max_new_tokens=6)[0] for d, im in zip(batch, images, strict=True)]
    assert together == alone and q.generate([], []) == []


def test_the_prompt_cache_gives_the_last_positions_logits_of_a_whole_forward(tiny_questioner: QuestionerModel) -> None:
    q = tiny_questioner
    batch, images = dialogues(), [people(4), people(2)]
    encoded = q.encode(batch, [len(row) for row in images], [0, 0])
    embeds, mask, _ = q.embed(encoded, q.encode_images(images), side="left")
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
    with torch.no_grad():
        whole = q.hf(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits[:, -1]
        cache = q.prompt_cache(embeds, mask, beams=2)  # each row twice
        last = q.hf(
            inputs_embeds=embeds[:, -1:].repeat_interleave(2, 0), attention_mask=mask.repeat_interleave(2, 0),
            position_ids=positions[:, -1:].repeat_interleave(2, 0), past_key_values=cache,
        ).logits[:, -1]  # fmt: skip
    torch.testing.assert_close(last, whole.repeat_interleave(2, 0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("beams", [1, 3])
def test_the_prompt_cache_changes_no_generated_token(tiny_questioner: QuestionerModel, beams: int) -> None:
    """Prompts read once and repeated per beam give the tokens of `generate` reading every beam's prompt itself."""
    q = tiny_questioner
    batch, images = dialogues(), [people(4), people(2)]  # prompts of two lengths: left padding
    encoded = q.encode(batch, [len(row) for row in images], [0, 0])
    embeds, mask, _ = q.embed(encoded, q.encode_images(images), side="left")
    plain = q.hf.generate(
        inputs_embeds=embeds, attention_mask=mask, max_new_tokens=6, do_sample=False, num_beams=beams,
        num_return_sequences=beams, eos_token_id=q.encoder.end_id, pad_token_id=q.encoder.pad_id,
    )  # fmt: skip
    assert q.generate_ids(batch, images, max_new_tokens=6, candidates=beams) == plain.tolist()


def test_beams_return_the_best_question_not_yet_asked(tiny_questioner: QuestionerModel) -> None:
    q = tiny_questioner
    dialogue, images = dialogues()[:1], [people(4)]
    rows = q.generate_ids(dialogue, images, max_new_tokens=6, candidates=3)
    beams = [q._decode(row) for row in rows]
    assert len(rows) == 3 and len(set(beams)) == 3
    assert q.generate(dialogue, images, max_new_tokens=6, candidates=3) == beams[:1]
    asked = Dialogue(dialogue[0].initial)
    asked.ask(f"  {beams[0].upper()} ", "I don't know.")  # compared without case and spacing
    expected = next((b for b in beams if b.lower() != beams[0].lower()), beams[0])
    assert q.generate([asked], images, max_new_tokens=6, candidates=3) == [expected]


def test_a_question_is_new_unless_asked_or_about_what_the_dialogue_says() -> None:
    dialogue = Dialogue("I saw a woman in a red top.")
    dialogue.ask("Was she wearing a hat?", "No, she wore no hat.")
    assert not is_new(" was she WEARING a hat? ", dialogue), "asked before, up to case and spacing"
    assert not is_new("What kind of hat did she have on?", dialogue), "the hat was asked about"
    assert not is_new("What colour was her top?", dialogue), "the initial description states it"
    assert is_new("What colour were her shoes?", dialogue)
    assert is_new("Anything else you remember?", dialogue), "a question outside the vocabulary is never refused"


def test_beams_skip_questions_about_covered_attributes(tiny_questioner: QuestionerModel, monkeypatch) -> None:
    beams = ["What colour was her top?", "Was she wearing a hat?", "What colour were her shoes?"]
    monkeypatch.setattr(tiny_questioner, "generate_ids", lambda *args: [[i] for i in range(len(beams))])
    monkeypatch.setattr(tiny_questioner, "_decode", lambda row: beams[row[0]])
    dialogue = Dialogue("I saw a woman in a red top.")
    dialogue.ask("Did she have a hat?", "No.")
    assert tiny_questioner.generate([dialogue], [people(1)], candidates=3) == [beams[2]]
    dialogue.ask("What about her shoes?", "Brown sneakers.")
    assert tiny_questioner.generate([dialogue], [people(1)], candidates=3) == [beams[0]], "none new: the best"


def test_a_dialogue_with_no_new_beam_is_searched_again_wider(tiny_questioner: QuestionerModel, monkeypatch) -> None:
    beams = ["What colour was her top?", "Was she wearing a hat?", "Which colour was her top?", "What about her bag?"]
    widths: list[tuple[int, int]] = []

    def search(dialogues, images, variant, max_new_tokens, candidates):
        widths.append((len(dialogues), candidates))
        return [[i] for _ in dialogues for i in range(candidates)]  # the first `candidates` beams, in order

    monkeypatch.setattr(tiny_questioner, "generate_ids", search)
    monkeypatch.setattr(tiny_questioner, "_decode", lambda row: beams[row[0]])
    stuck = Dialogue("I saw a woman in a red top.")
    stuck.ask("Did she have a hat?", "No.")
    fine = Dialogue("I saw a woman.")
    asked = tiny_questioner.generate([stuck, fine], [people(1), people(1)], candidates=3, retry_candidates=4)
    assert asked == [beams[3], beams[0]] and widths == [(2, 3), (1, 4)], "only the stuck dialogue, 4 beams"
    widths.clear()
    assert tiny_questioner.generate([stuck], [people(1)], candidates=3) == [beams[0]] and widths == [(1, 3)]


def test_a_beam_that_reads_as_a_new_attribute_beats_a_garbled_one() -> None:
    dialogue = Dialogue("I saw a woman in a red top.")
    garbled, shoes, top = "Can you tell me what she wearing?", "What colour were her shoes?", "What colour was her top?"
    assert choose_question([top, garbled, shoes], dialogue) == shoes
    assert choose_question([top, garbled], dialogue) == garbled, "new beats covered even when it reads as nothing"
    assert choose_question([top], dialogue) == top


def test_question_nll_is_each_rows_mean_token_loss(tiny_questioner: QuestionerModel) -> None:
    """`question_nll` scores each question alone, as `nll` does a batch of one (a mean over its target tokens)."""
    dialogues = [Dialogue("I saw a woman."), Dialogue("I saw a man in a red top.")]
    images = [people(2), people(1)]
    questions = ["What colour were her shoes?", "Did he carry a bag?"]
    per_row = tiny_questioner.question_nll(dialogues, images, questions)
    with torch.no_grad():
        alone = [
            tiny_questioner.nll([d], [i], [q], [0])[0] for d, i, q in zip(dialogues, images, questions, strict=True)
        ]
    assert torch.allclose(per_row, torch.stack(alone), atol=1e-5)


def test_a_dialogue_with_no_new_beam_asks_the_likeliest_open_question(
    tiny_questioner: QuestionerModel, monkeypatch
) -> None:
    """With `open_fallback`, a dialogue with no new readable beam asks the open question of lowest NLL; others keep
    their beam."""
    beams = ["What colour was her top?", "Was she wearing a hat?", "What colour were her shoes?"]
    monkeypatch.setattr(tiny_questioner, "generate_ids", lambda d, i, v, m, c: [[k] for _ in d for k in range(2)])
    monkeypatch.setattr(tiny_questioner, "_decode", lambda row: beams[row[0]])
    stuck = Dialogue("I saw a woman in a red top.")
    stuck.ask("Did she have a hat?", "No.")
    fine = Dialogue("I saw a woman.")
    open_ones = open_questions(stuck)
    assert open_ones and not any(q in beams[:2] for q in open_ones)
    nll = tiny_questioner.question_nll([stuck] * len(open_ones), [people(1)] * len(open_ones), open_ones)
    asked = tiny_questioner.generate([stuck, fine], [people(1), people(1)], candidates=2, open_fallback=True)
    assert asked == [open_ones[int(nll.argmin())], beams[0]]
    assert is_new(asked[0], stuck)
    assert tiny_questioner.generate([stuck], [people(1)], candidates=2) == [beams[0]], "off: the best beam"
    beams[:2] = ["Can you tell me what she wearing?", "Tell me?"]  # new, but garbled: no witness can answer them
    garbled = tiny_questioner.generate([fine], [people(1)], candidates=2, open_fallback=True)
    assert garbled[0] in open_questions(fine) and garbled[0] not in beams
