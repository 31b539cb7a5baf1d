"""Every question strategy by name (each a row of the evaluation table), with the trained parts it loads."""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path
from typing import Any

from ireid.app.vision_models import ANNOTATED, vision_model
from ireid.core.expected_gain import ExpectedGainRule
from ireid.core.images import ImageSource, ImageStore
from ireid.core.llm import OPENAI_PREFIX, ChatLLM, ServerSettings, load_chat_llm
from ireid.core.loader import load_records
from ireid.core.protocols import CandidateSelector
from ireid.core.rounds import QuestionStrategy
from ireid.interactive.config import EvalConfig, LlavaReIDConfig, PlugIRLLMConfig
from ireid.interactive.strategies.annotated import RandomQuestions
from ireid.interactive.strategies.chatir import ChatIR, example_dialogues
from ireid.interactive.strategies.expected_gain import ExpectedGain
from ireid.interactive.strategies.heuristic import PlugIR, SimIRV
from ireid.interactive.strategies.initial import InitialOnly
from ireid.interactive.strategies.llava_reid import SELECTOR, LlavaReID
from ireid.interactive.strategies.plugir_llm import AnnotatedCaptioner, Captioner, PlugIRLLM, VisionCaptioner
from ireid.interactive.strategies.simirv_llm import SimIRVLLM
from ireid.interactive.strategies.target_frequency import TargetFrequency
from ireid.questioner.inference import LlavaReidQuestioner
from ireid.questioner.inference import load_selector as joint_selector
from ireid.questioner.lookforward import OracleLookForward, target_attribute_counts
from ireid.selector.inference import load_selector

STRATEGIES: tuple[str, ...] = (
    "initial", "random", "oracle-lookforward", "simirv", "plugir", "expected-gain", "expected-gain:annotated",
    "expected-gain:reader", "target-frequency", "chatir", "simirv-llm", "plugir-llm", "llava-reid",
)  # fmt: skip
# LLaVA-ReID Table 3 rows beside "llava-reid" (selector, look-forward targets): other candidate rules, random targets.
LLAVA_REID_VARIANTS: tuple[str, ...] = (
    "llava-reid:top-k", "llava-reid:k-means", "llava-reid:uniform", "llava-reid:random-targets"
)  # fmt: skip


# Evaluation settings every strategy's results depend on; each strategy adds its own section (`strategy_settings`).
COMMON_SETTINGS = (
    "data_dir",
    "split",
    "retriever_ckpt",
    "rounds",
    "seed",
    "witness",
    "tokenizer_dir",
    "text",
    "rerank",
    "thi",
)
SECTIONS = {
    "plugir": "plugir",
    "expected-gain": "expected_gain",
    "target-frequency": "target_frequency",
    "chatir": "chatir",
    "simirv-llm": "simirv_llm",
    "plugir-llm": "plugir_llm",
    "llava-reid": "llava_reid",
}


def strategy_settings(name: str, config: EvalConfig) -> dict[str, Any]:
    """What a strategy's finished results were computed with: the common settings and its own config section.

    The harness keeps it beside each finished batch and redoes a batch computed with other settings, so a changed
    checkpoint or option is never answered with old numbers, while a change to another strategy's section keeps
    this one's results.
    """
    whole = config.to_dict()
    settings = {key: whole[key] for key in COMMON_SETTINGS}
    section = SECTIONS.get(name.split(":")[0])
    if section is not None:
        settings[section] = whole[section]
    return settings


def build_strategy(name: str, config: EvalConfig, images: ImageSource | None = None) -> QuestionStrategy:
    """The strategy called `name`, set up from the evaluation config (LLMs and example dialogues loaded here).

    `images` are the gallery's images where they are not the config's split (the investigator's folder)."""
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
    if name in ("expected-gain", "expected-gain:annotated", "expected-gain:reader"):
        settings = dataclasses.asdict(config.expected_gain)
        reader = settings.pop("reader")
        rule = ExpectedGainRule(**settings, annotated=name.endswith(":annotated"))
        if name != "expected-gain:reader":
            return ExpectedGain(rule)
        if not reader:
            raise ValueError("config expected_gain.reader: name an attribute net file (ireid attribute-net fit)")
        return ExpectedGain(rule, reader, images or _gallery_images(config.data_dir, config.split))
    if name == "target-frequency":
        settings = config.target_frequency
        if not settings.targets:
            raise ValueError("config target_frequency.targets: name a look-forward targets folder to count")
        return TargetFrequency(target_attribute_counts(Path(settings.targets), settings.split))
    if name == "chatir":
        llm = _chat_llm(config.chatir.llm, config.tokenizer_dir, config.chatir.batch_size, config.server)
        examples = example_dialogues(load_records(config.data_dir, "train"), config.chatir.examples)
        return ChatIR(llm, examples, config.chatir.max_new_tokens)
    if name == "simirv-llm":
        settings = config.simirv_llm
        return SimIRVLLM(
            _chat_llm(settings.llm, config.tokenizer_dir, settings.batch_size, config.server),
            settings.extra_objects,
            settings.max_objects,
            settings.write_questions,
            settings.max_new_tokens,
        )
    if name == "plugir-llm":
        settings = config.plugir_llm
        return PlugIRLLM(
            _chat_llm(settings.llm, config.tokenizer_dir, settings.batch_size, config.server),
            _captioner(settings, config, images),
            settings.top_n,
            settings.clusters,
            settings.candidates,  # type: ignore[arg-type]
            settings.questions,
            settings.max_new_tokens,
            settings.filter_tokens,
        )
    if name == "llava-reid" or name in LLAVA_REID_VARIANTS:
        return build_llava_reid(name, config, images)
    known = ", ".join((*STRATEGIES, *LLAVA_REID_VARIANTS))
    raise ValueError(f"unknown strategy {name!r}; expected one of {known}")


@cache
def _questioner(ckpt: str, max_new_tokens: int, beams: int, retry_beams: int, open_fallback: bool):
    return LlavaReidQuestioner.from_checkpoint(
        ckpt, max_new_tokens=max_new_tokens, candidates=beams, retry_candidates=retry_beams, open_fallback=open_fallback
    )


def server_options(source: str, server: ServerSettings) -> dict[str, Any]:
    """What an `openai:` source's client takes from the run's server settings (nothing, for a local model)."""
    return dataclasses.asdict(server) if source.startswith(OPENAI_PREFIX) else {}


def _chat_llm(source: str, tokenizer_dir: str | None, batch_size: int, server: ServerSettings) -> ChatLLM:
    return _loaded_llm(source, tokenizer_dir, batch_size, tuple(sorted(server_options(source, server).items())))


@cache
def _loaded_llm(source: str, tokenizer_dir: str | None, batch_size: int, http: tuple[tuple[str, Any], ...]) -> ChatLLM:
    """One loaded LLM for every strategy that names the same one."""
    return load_chat_llm(source, tokenizer_dir=tokenizer_dir, batch_size=batch_size, **dict(http))


def _captioner(settings: PlugIRLLMConfig, config: EvalConfig, images: ImageSource | None = None) -> Captioner:
    """`plugir-llm`'s captioner: the gallery's fine descriptions (`annotated`, uses ground truth), or the vision
    model `settings.vision` names, shown the evaluated split's images."""
    if settings.vision == ANNOTATED:
        return AnnotatedCaptioner()
    images = images or _gallery_images(config.data_dir, config.split)
    return VisionCaptioner(vision_model(settings.vision, config.server), images, settings.caption_tokens)


@cache
def _gallery_images(data_dir: str, split: str) -> ImageStore:
    return ImageStore.from_shards(data_dir, split)


def _selector(settings: LlavaReIDConfig, questioner_ckpt: str) -> CandidateSelector:
    """The selector trained jointly with the questioner, else the one in `selector_ckpt`."""
    joint = joint_selector(questioner_ckpt)
    if joint is not None:
        return joint
    if not settings.selector_ckpt:
        raise ValueError(
            f"config llava_reid: {questioner_ckpt} holds no selector; set selector_ckpt "
            "(or pick candidates with top-k | k-means | uniform)"
        )
    return load_selector(settings.selector_ckpt)


def build_llava_reid(name: str, config: EvalConfig, images: ImageSource | None = None) -> LlavaReID:
    """`llava-reid` as configured, or one of its Table 3 variants (`llava-reid:<candidates>`, `:random-targets`)."""
    settings = config.llava_reid
    variant = name.partition(":")[2]
    candidates = variant if variant in ("top-k", "k-means", "uniform") else settings.candidates
    ckpt = settings.random_targets_ckpt if variant == "random-targets" else settings.questioner_ckpt
    if not ckpt:
        field = "random_targets_ckpt" if variant == "random-targets" else "questioner_ckpt"
        raise ValueError(f"strategy {name!r} needs config llava_reid.{field} (a trained questioner checkpoint)")
    selector = _selector(settings, ckpt) if candidates == SELECTOR else None
    return LlavaReID(
        _questioner(
            ckpt, settings.max_new_tokens, settings.question_beams, settings.retry_beams, settings.open_fallback
        ),
        images or _gallery_images(config.data_dir, config.split),
        selector,
        candidates=candidates,
        num_select=settings.num_select,
        budget=settings.budget,
        name=name,
    )
