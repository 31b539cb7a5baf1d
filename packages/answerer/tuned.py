"""A tuned witness on disk: a LoRA adapter and `witness.json`, which names the base model it adapts.

`build_witness("tuned:<dir>")` reads the folder, loads the base chat LLM the way `load_chat_llm` does, merges the
adapter into it and answers through `LLMWitness` with the paper's prompt, as in training. A tiny base (tests) is
rebuilt from the tokenizer saved beside the adapter: it is the seeded random Qwen2 of that tokenizer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ireid.core.llm import LocalChatLLM, load_chat_llm
from ireid.core.shards import atomic_write_json

WITNESS_FILE = "witness.json"
ADAPTER_DIR = "adapter"
TOKENIZER_DIR = "tokenizer"
FORMAT = "ireid-tuned-witness/1"


def base_source(source: str) -> str:
    """The base as witness.json records it: a local model directory as an absolute path, other names as given."""
    return str(Path(source).expanduser().resolve()) if Path(source).expanduser().is_dir() else source


def load_base(source: str, tokenizer_dir: str | Path | None = None, batch_size: int = 16) -> LocalChatLLM:
    """The chat LLM a tuned witness starts from: "tiny" (with `tokenizer_dir`), "smollm2" or a local directory."""
    llm = load_chat_llm(source, tokenizer_dir=tokenizer_dir, batch_size=batch_size)
    if not isinstance(llm, LocalChatLLM):
        raise ValueError(f"a tuned witness needs a model in this process, not the server {source!r}")
    return llm


def save_tuned_witness(
    out_dir: str | Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    source: str,
    training: dict[str, Any],
) -> Path:
    """Write the adapter of the PEFT `model` and witness.json (last, atomically: a folder with it is complete)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".{ADAPTER_DIR}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    shutil.rmtree(out / ADAPTER_DIR, ignore_errors=True)
    staging.rename(out / ADAPTER_DIR)
    if source == "tiny":
        tokenizer.save_pretrained(out / TOKENIZER_DIR)
    atomic_write_json(
        out / WITNESS_FILE,
        {
            "format": FORMAT,
            "base": base_source(source),
            "tokenizer": TOKENIZER_DIR if source == "tiny" else None,
            "adapter": ADAPTER_DIR,
            "training": training,
        },
    )
    return out


def read_witness_file(directory: str | Path) -> dict[str, Any]:
    """witness.json of a tuned witness folder, checked; errors name the file and the field."""
    folder = Path(directory)
    path = folder / WITNESS_FILE
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such tuned witness folder")
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: {folder} is not a tuned witness (python -m ireid.answerer tune writes one)"
        )
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: field 'format' must be {FORMAT!r}")
    for field in ("base", "adapter"):
        if not isinstance(meta.get(field), str) or not meta[field]:
            raise ValueError(f"{path}: field '{field}' must be a non-empty string")
    if meta["base"] == "tiny" and not isinstance(meta.get("tokenizer"), str):
        raise ValueError(f"{path}: field 'tokenizer' must name the tokenizer folder of a tiny base")
    if not (folder / meta["adapter"]).is_dir():
        raise FileNotFoundError(f"{path}: field 'adapter' names {folder / meta['adapter']}, which does not exist")
    return meta


def load_tuned_llm(directory: str | Path, batch_size: int = 16) -> LocalChatLLM:
    """The base chat LLM with the folder's adapter merged in."""
    from peft import PeftModel

    folder = Path(directory)
    meta = read_witness_file(folder)
    tokenizer_dir = folder / meta["tokenizer"] if meta["base"] == "tiny" else None
    base = load_base(meta["base"], tokenizer_dir=tokenizer_dir, batch_size=batch_size)
    merged = PeftModel.from_pretrained(base.model, str(folder / meta["adapter"])).merge_and_unload()
    return LocalChatLLM(merged, base.tokenizer, batch_size=batch_size)
