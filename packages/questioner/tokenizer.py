"""Tokenizers of the tiny questioner: the data set's BPE, trained on the questioner's prompts too.

Every training prompt carries a Table 9 instruction (about 70 words). A BPE trained on the data set's text
alone splits its words into pieces (about 240 tokens on the synthetic world); with the prompts in the training
text they become whole tokens, and a synthetic prompt with four images shrinks from ~450 to ~225 tokens, which
halves the cost of a CPU training step. Real models bring their own tokenizer.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from ireid.core.tokenizer import dataset_tokenizer
from ireid.questioner.prompt import instructions, system_message

PROMPT_WEIGHT = 1000  # copies of the prompt texts, so their words are merged before the data set's rarer ones
TOKENIZER_KEY = "questioner_tokenizer"  # a tiny model's checkpoint field: `tokenizer_files` of its tokenizer


def prompt_texts() -> list[str]:
    return [*instructions(), system_message()]


def questioner_tokenizer(data_dir: Path | str, vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """The tokenizer of `data_dir`'s train split and the prompts, trained once and saved beside the shards.

    Trained in a temporary folder renamed into place, so concurrent processes end up loading one tokenizer.
    """
    extra = prompt_texts() * PROMPT_WEIGHT
    return dataset_tokenizer(data_dir, vocab_size, extra_texts=extra, name="questioner-tokenizer")


def resolve_tokenizer(spec: str | Path, vocab_size: int = 2048) -> PreTrainedTokenizerBase:
    """`spec` is a tokenizer directory, or a data set folder (with `train.manifest.json`): its questioner tokenizer."""
    path = Path(spec)
    if (path / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(path))
    if (path / "train.manifest.json").is_file():
        return questioner_tokenizer(path, vocab_size)
    raise FileNotFoundError(
        f"tokenizer {str(spec)!r}: neither a tokenizer directory (tokenizer.json) nor a data set folder "
        "(train.manifest.json)"
    )


def source_tokenizer(source: str, spec: str | Path | None, vocab_size: int = 2048) -> PreTrainedTokenizerBase | None:
    """The tokenizer a tiny model (`source="tiny"`) is built with, from `spec` (see `resolve_tokenizer`); None for a
    real checkpoint, which brings its own."""
    if source != "tiny":
        return None
    if spec is None:
        raise ValueError("source 'tiny' needs field 'tokenizer' (a tokenizer directory or a data set folder)")
    return resolve_tokenizer(spec, vocab_size)


def tokenizer_files(tokenizer: PreTrainedTokenizerBase) -> dict[str, str]:
    """The saved tokenizer as {file name: text}, for a checkpoint to carry (plain strings load with weights_only)."""
    with tempfile.TemporaryDirectory(prefix="ireid-tokenizer-") as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def write_tokenizer_files(files: dict[str, str], out_dir: Path | str) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        if Path(name).name != name:
            raise ValueError(f"tokenizer file name {name!r} is not a plain file name")
        (out / name).write_text(text, encoding="utf-8")
    return out
