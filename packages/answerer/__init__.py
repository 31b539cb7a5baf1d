"""Witness simulators: answer a searcher's questions from the memory of the person seen (LLM or rule-based)."""

from ireid.answerer.factory import build_witness
from ireid.answerer.llm_witness import LLMWitness, fill_prompt, load_prompt, second_person, witness_conversation
from ireid.answerer.rule_based import RuleBasedWitness

__all__ = [
    "LLMWitness",
    "RuleBasedWitness",
    "build_witness",
    "fill_prompt",
    "load_prompt",
    "second_person",
    "witness_conversation",
]
