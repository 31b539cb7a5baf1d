import torch

from ireid.core.protocols import CandidateSelector, Dialogue, TextImageRetriever, Witness


def test_dialogue_retrieval_text_is_initial_then_answers():
    d = Dialogue("I saw a woman in a red top.")
    d.ask("What about her shoes?", "She wore white sneakers.")
    d.ask("Did she carry a bag?", "No, she carried no bag.")
    d.ask("What was in her hands?", "I don't know.")
    assert d.retrieval_text() == "I saw a woman in a red top. She wore white sneakers. She carried no bag."
    assert d.retrieval_text(clean=False).endswith("No, she carried no bag. I don't know.")
    assert d.retrieval_text(with_questions=True, separator="\n").splitlines() == [
        "I saw a woman in a red top.",
        "What about her shoes?",
        "She wore white sneakers.",
        "Did she carry a bag?",
        "She carried no bag.",
    ]
    assert d.asked == ["What about her shoes?", "Did she carry a bag?", "What was in her hands?"]


def test_protocols_are_checkable_at_runtime():
    class EchoWitness:
        def answer(self, questions, memories):
            return list(memories)

    class TopSelector:
        def select(self, dialogue, candidates, mask, num_select):
            return torch.arange(num_select).expand(len(dialogue), -1)

    assert isinstance(EchoWitness(), Witness)
    assert isinstance(TopSelector(), CandidateSelector)
    assert not isinstance(EchoWitness(), TextImageRetriever)
