"""`random`: asks a random not-yet-asked question of each record's annotated question bank."""

from __future__ import annotations

from ireid.core.rounds import RoundContext, unused_questions


class RandomQuestions:
    """A random not-yet-asked question from the record's annotated bank (LLaVA-ReID Table 3, "random")."""

    name = "random"
    uses_ground_truth = False

    def ask(self, ctx: RoundContext) -> list[str | None]:
        questions: list[str | None] = []
        for i, (record, dialogue) in enumerate(zip(ctx.queries, ctx.dialogues, strict=True)):
            unused = unused_questions(record, dialogue)
            questions.append(record.qas[ctx.rng(i).choice(unused)].question if unused else None)
        return questions
