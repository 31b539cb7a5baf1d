"""The interactive evaluation's settings: a YAML file, with command-line flags overriding single keys."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ireid.core.expected_gain import ExpectedGainRule
from ireid.core.llm import ServerSettings
from ireid.core.settings import load_settings

TEXT_MODES = ("answers", "questions+answers")
# What `simirv-llm` asks about after the objects of the initial description: parts of a pedestrian a witness can
# usually describe, so a dialogue does not stop when a short description names one thing.
PERSON_PARTS: tuple[str, ...] = ("hair", "upper clothing", "lower clothing", "shoes", "bag", "hat", "glasses")


@dataclass
class PlugIRConfig:
    top_n: int = 500  # PlugIR pool: top_n · (1 − (t − 1)/10)
    clusters: int = 10
    candidates: str = "k-means"  # how representatives are picked: top-k | k-means | uniform


@dataclass
class ExpectedGainConfig:
    """`ExpectedGainRule`'s settings (its defaults) and expected-gain:reader's attribute net."""

    pool: int = ExpectedGainRule.pool  # the top candidates that stand for the target (places in the whole gallery)
    temperature: float = ExpectedGainRule.temperature  # posterior over them: softmax(score / temperature)
    answer_temperature: float = ExpectedGainRule.answer_temperature  # a candidate's likely answer: softmax over values
    contradiction: float = ExpectedGainRule.contradiction  # times their fit to each stated answer, floored here
    reader: str | None = None  # expected-gain:reader's attribute net file (`ireid attribute-net fit`)


@dataclass
class ChatIRConfig:
    llm: str = "smollm2"  # tiny | smollm2 | openai:<url>#<model> | a local model directory
    examples: int = 3  # dialogue examples from the training split shown in the prompt
    max_new_tokens: int = 48
    batch_size: int = 32


@dataclass
class SimIRVLLMConfig:
    llm: str = "smollm2"  # tiny | smollm2 | openai:<url>#<model> | a local model directory
    max_objects: int = 4  # objects kept from the initial description (the LLM lists them once per description)
    extra_objects: list[str] = field(default_factory=lambda: list(PERSON_PARTS))  # asked next, in order
    write_questions: bool = True  # the LLM writes each object's question; false: the fixed template, no LLM call
    max_new_tokens: int = 48
    batch_size: int = 32


@dataclass
class PlugIRLLMConfig(PlugIRConfig):
    llm: str = "smollm2"  # writes the candidate questions and answers them from the dialogue (the filter)
    # the captioner of the cluster representatives: annotated (the gallery's fine descriptions; uses ground truth) |
    # chatreid:<ckpt> | openai:<url>#<model> (a vision-language model shown each image)
    vision: str = "annotated"
    questions: int = 5  # candidate questions per round, tried in order by the redundancy filter
    caption_tokens: int = 48
    max_new_tokens: int = 96  # for the candidate questions
    filter_tokens: int = 16  # for the filter's answer
    batch_size: int = 32


@dataclass
class LlavaReIDConfig:
    questioner_ckpt: str = ""  # a questioner checkpoint trained on look-forward targets (joint stage: has the selector)
    selector_ckpt: str = ""  # a selector checkpoint, when the questioner checkpoint carries none
    random_targets_ckpt: str = ""  # Table 3's question row: a questioner trained on random targets
    candidates: str = "selector"  # selector | top-k | k-means | uniform
    num_select: int = 4  # images shown per round (c)
    budget: int = 200  # the pool at round t: ceil(budget / t)
    max_new_tokens: int = 96
    question_beams: int = 8  # beams kept per question; the best new one is used (1: greedy)
    retry_beams: int = 0  # a second, wider search where no beam is new (0: none)
    open_fallback: bool = False  # still no new question: the open question the questioner finds likeliest


@dataclass
class TargetFrequencyConfig:
    targets: str = ""  # a look-forward targets folder (`ireid lookforward`; the demo's llava-reid/targets)
    split: str = "train"  # whose targets are counted


@dataclass
class RerankConfig:
    """LLaVA-ReID §5.3: a base model's initial-description similarity averaged in, from a retriever checkpoint or a
    saved similarity file (`ireid.interactive.similarity_file`), one of the two."""

    base_ckpt: str = ""  # a retriever checkpoint whose initial-description similarity is averaged in
    base_scores: str = ""  # or a saved similarity file (.npz: scores, query_keys, gallery_keys)
    weight: float = 0.5

    def __post_init__(self) -> None:
        if bool(self.base_ckpt) == bool(self.base_scores):
            raise ValueError("config field 'rerank': give one of 'base_ckpt' and 'base_scores'")


@dataclass
class EvalConfig:
    data_dir: str = "runs/demo/data"
    split: str = "test"
    retriever_ckpt: str = "runs/demo/retriever/last.ckpt"
    out: str = "runs/eval"
    rounds: int = 5
    batch_size: int = 100
    max_queries: int | None = None
    seed: int = 0
    witness: str = "rule"  # rule | rule-absent | tiny | smollm2 | openai:<url>#<model> | a local model directory
    tokenizer_dir: str | None = None  # for tiny LLMs: a tokenizer with a chat template
    text: str = "answers"  # what the retriever reads: answers | questions+answers
    allow_partial: bool = False  # go on when the split reads fewer samples than its manifest lists (the report says)
    # every openai: source of the run (witness, chatir, simirv-llm, plugir-llm and its captioner): seconds per request,
    # attempts per request, concurrent requests; THI keeps its own in `thi.server`
    server: ServerSettings = field(default_factory=ServerSettings)
    strategies: list[str] = field(
        default_factory=lambda: ["initial", "random", "oracle-lookforward", "simirv", "plugir", "chatir"]
    )
    plugir: PlugIRConfig = field(default_factory=PlugIRConfig)
    expected_gain: ExpectedGainConfig = field(default_factory=ExpectedGainConfig)
    chatir: ChatIRConfig = field(default_factory=ChatIRConfig)
    simirv_llm: SimIRVLLMConfig = field(default_factory=SimIRVLLMConfig)
    plugir_llm: PlugIRLLMConfig = field(default_factory=PlugIRLLMConfig)
    llava_reid: LlavaReIDConfig = field(default_factory=LlavaReIDConfig)
    target_frequency: TargetFrequencyConfig = field(default_factory=TargetFrequencyConfig)
    rerank: RerankConfig | None = None
    # ICL's THI on each round's ranking, the dialogue's text as the query (`ireid.icl`): {"mllm": "annotated" |
    # "chatreid:<ckpt>" | "openai:<url>#<model>", and any THISettings field: xi, xi_from, lam, rounds, aggregation, ...}
    thi: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.text not in TEXT_MODES:
            raise ValueError(f"config field 'text': {self.text!r} is not one of {TEXT_MODES}")
        if self.rounds < 1:
            raise ValueError(f"config field 'rounds': must be at least 1, got {self.rounds}")
        if self.batch_size < 1:
            raise ValueError(f"config field 'batch_size': must be at least 1, got {self.batch_size}")
        if self.thi is not None and self.rerank is not None:
            raise ValueError("config fields 'thi' and 'rerank': one re-ranking per evaluation, not both")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_config(path: Path | str | None) -> EvalConfig:
    """Defaults, updated by the YAML file at `path` (when given)."""
    return load_settings(EvalConfig, path)
