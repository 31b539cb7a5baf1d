"""Question strategies for the interactive loop, by name (each a row of the evaluation table)."""

from __future__ import annotations

from ireid.core.llm import load_chat_llm
from ireid.core.loader import load_records
from ireid.interactive.config import EvalConfig
from ireid.interactive.strategies.annotated import OracleLookForward, RandomQuestions
from ireid.interactive.strategies.base import QuestionStrategy, RoundContext
from ireid.interactive.strategies.chatir import ChatIR, example_dialogues
from ireid.interactive.strategies.heuristic import PlugIR, SimIRV

STRATEGIES: tuple[str, ...] = ("initial", "random", "oracle-lookforward", "simirv", "plugir", "chatir")


class InitialOnly:
    """No interaction: every round keeps the initial description's ranking."""

    name = "initial"
    uses_ground_truth = False

    def ask(self, ctx: RoundContext) -> list[str | None]:
        return [None] * len(ctx.dialogues)


def build_strategy(name: str, config: EvalConfig) -> QuestionStrategy:
    """The strategy called `name`, set up from the evaluation config (LLMs and example dialogues loaded here)."""
    if name == "initial":
        return InitialOnly()
    if name == "random":
        return RandomQuestions()
    if name == "oracle-lookforward":
        return OracleLookForward()
    if name == "simirv":
        return SimIRV()
    if name == "plugir":
        return PlugIR(config.plugir.top_n, config.plugir.clusters, config.plugir.candidates)  # type: ignore[arg-type]
    if name == "chatir":
        llm = load_chat_llm(config.chatir.llm, tokenizer_dir=config.tokenizer_dir, batch_size=config.chatir.batch_size)
        examples = example_dialogues(load_records(config.data_dir, "train"), config.chatir.examples)
        return ChatIR(llm, examples, config.chatir.max_new_tokens)
    raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")


__all__ = ["STRATEGIES", "InitialOnly", "QuestionStrategy", "RoundContext", "build_strategy"]
