"""What the retriever alone reaches on the evaluated queries, the frame every strategy's R@1 is read in.

Three texts per query, R@1 against the same gallery: the initial description (where every dialogue starts), the
dialogue text after the witness answered *every* annotated question (initial description + all the record's
answers: it reads the target's annotations, so it is marked as using ground truth; an upper end for a questioner
that could ask everything), and the fine description (how the retriever was trained to be read).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ireid.core.gallery import Gallery
from ireid.core.metrics import target_ranks_from_scores
from ireid.core.protocols import Dialogue, TextImageRetriever
from ireid.core.records import Record

REFERENCE_TEXTS = ("initial description", "every answer (uses ground truth)", "fine description")


def every_answer(record: Record, text_of: Callable[[Dialogue], str]) -> str:
    """The dialogue text once every annotated question of `record` has been asked and answered."""
    dialogue = Dialogue(record.initial_description)
    for qa in record.qas:
        dialogue.ask(qa.question, qa.answer)
    return text_of(dialogue)


@torch.no_grad()
def retriever_reference(
    retriever: TextImageRetriever,
    gallery: Gallery,
    queries: Sequence[Record],
    text_of: Callable[[Dialogue], str],
) -> dict[str, float]:
    """R@1 (%) of each of `REFERENCE_TEXTS` over `queries`; a text a query lacks counts as a miss."""
    pids = torch.tensor([q.pid for q in queries], dtype=torch.long)
    texts = (
        [q.initial_description for q in queries],
        [every_answer(q, text_of) for q in queries],
        [q.fine_description for q in queries],
    )
    reference = {}
    for name, batch in zip(REFERENCE_TEXTS, texts, strict=True):
        present = [i for i, text in enumerate(batch) if text.strip()]
        hits = 0
        if present:
            scores = gallery.scores(retriever.encode_text([batch[i] for i in present]))
            hits = int((target_ranks_from_scores(scores, pids[present], gallery.pids) == 1).sum())
        reference[name] = 100.0 * hits / max(len(queries), 1)
    return reference
