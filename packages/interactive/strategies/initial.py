"""`initial`: no interaction, the row every other strategy is measured against."""

from __future__ import annotations

from ireid.core.rounds import RoundContext


class InitialOnly:
    """No interaction: every round keeps the initial description's ranking."""

    name = "initial"
    uses_ground_truth = False

    def ask(self, ctx: RoundContext) -> list[str | None]:
        return [None] * len(ctx.dialogues)
