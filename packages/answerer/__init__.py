"""Witness simulators: answer a searcher's questions from the memory of the person seen (LLM or rule-based), or
from an image of that person (visual)."""

from ireid.answerer.factory import build_witness, is_visual
from ireid.answerer.llm_witness import LLMWitness, fill_prompt, load_prompt, second_person, witness_conversation
from ireid.answerer.rule_based import RuleBasedWitness
from ireid.answerer.visual_witness import VisualWitness

__all__ = [
    "LLMWitness",
    "RuleBasedWitness",
    "VisualWitness",
    "build_witness",
    "fill_prompt",
    "is_visual",
    "load_prompt",
    "second_person",
    "witness_conversation",
]
