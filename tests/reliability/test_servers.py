"""Servers that are down, hang or answer garbage (all on 127.0.0.1): the harness and the construction end in one
line naming the URL, within the timeout and retries the command line sets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ireid.app.cli import main


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server(request) -> Iterator[str]:
    """`down`: nothing listens; `hang`: accepts and never answers; `garbage`: answers 200 with no JSON."""
    kind = request.param
    port = _free_port()
    if kind == "down":
        yield f"http://127.0.0.1:{port}/v1"
        return
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen(8)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            if kind == "garbage":
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\nnot json!")
                conn.close()
            else:
                held.append(conn)  # hang: keep it open, say nothing

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/v1"
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    listener.close()


@pytest.mark.parametrize("server", ["down", "hang", "garbage"], indirect=True)
def test_a_witness_server_that_fails_ends_the_evaluation_in_one_line(
    server: str, tiny_world: Path, tower_file: Path, tmp_path: Path, capsys
) -> None:
    ckpt = str(tower_file.parent / "retriever.ckpt")
    args = ["eval", "interactive", "--data", str(tiny_world), "--retriever-ckpt", ckpt,
            "--witness", f"openai:{server}#model", "--strategies", "simirv", "--rounds", "1", "--max-queries", "2",
            "--timeout-s", "0.5", "--max-retries", "2", "--out", str(tmp_path / "eval")]  # fmt: skip
    start = time.monotonic()
    assert main(args) == 2
    assert time.monotonic() - start < 30
    [error] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert server in error


@pytest.mark.parametrize("server", ["hang"], indirect=True)
def test_the_construction_stops_on_a_hanging_server_in_one_line(server: str, tiny_world: Path, tmp_path: Path, capsys):
    args = ["data", "build-interactive", "--data", str(tiny_world), "--out", str(tmp_path / "b"), "--vlm", "annotated",
            "--llm", f"openai:{server}#model", "--splits", "test", "--max-records", "2", "--timeout-s", "0.5",
            "--max-retries", "1", "--quiet"]  # fmt: skip
    assert main(args) == 2
    [error] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert server in error and "after 1 attempts" in error
    assert '"complete": false' in (tmp_path / "b" / "build.json").read_text()  # never looks finished
