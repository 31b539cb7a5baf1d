"""The investigator's web page and JSON API (FastAPI; the OpenAPI description is served at /openapi.json, and read
at /docs).

| route | does |
|---|---|
| `GET /` | the page |
| `GET /api/info` | the gallery, the question strategy, how many candidates a view shows |
| `POST /api/sessions` | start a session from the witness's description |
| `GET /api/sessions/{id}` | the session as the page shows it |
| `POST /api/sessions/{id}/answer` | answer the question: `yes`, `no`, `dont_know`, or `text` with the words |
| `POST /api/sessions/{id}/reject` | "not them": the image and its look-alikes leave the ranking |
| `POST /api/sessions/{id}/accept` | "this is them": the session ends with that image |
| `GET /api/sessions/{id}/export` | the session as JSON (resumable) |
| `GET /api/sessions/{id}/contact-sheet.png` | the top candidates as one PNG |
| `POST /api/sessions/resume` | upload an export (JSON, at most `MAX_UPLOAD_BYTES`) to continue it in a new session |
| `GET /api/images/{key}` | an image of the gallery, by its key (nothing else is served) |

Errors are JSON `{"detail": "..."}` with one line: 400 for a request the session cannot take, 404 for an unknown
session or image, 413 for an upload that is too large, 415 for one that is not JSON, 422 for a malformed body.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, Literal

from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from ireid.app.investigator.session import Investigation, InvestigationError, Investigator, UnknownSession
from ireid.core.converters.common import JPEG_MAGIC, PNG_MAGIC

MAX_UPLOAD_BYTES = 256 * 1024
STATIC = resources.files("ireid.app.investigator").joinpath("static")


class Description(BaseModel):
    description: str = Field(description="the witness's first description of the person")


class Answer(BaseModel):
    kind: Literal["yes", "no", "dont_know", "text"]
    text: str | None = Field(default=None, description="the answer's words, for kind 'text'")


class Mark(BaseModel):
    key: str = Field(description="a gallery image's key, as a candidate lists it")


def _image_type(data: bytes) -> str:
    if data.startswith(PNG_MAGIC):
        return "image/png"
    if data.startswith(JPEG_MAGIC):
        return "image/jpeg"
    return "application/octet-stream"


def create_app(investigator: Investigator) -> FastAPI:
    """The app over one `Investigator`; the caller serves it (uvicorn) or tests it (TestClient)."""
    app = FastAPI(
        title="ireid investigator",
        summary="Search a gallery of person images by describing the person and answering questions.",
        version="1",
    )

    @app.exception_handler(InvestigationError)
    async def _bad_request(_: Request, error: InvestigationError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    @app.exception_handler(UnknownSession)
    async def _no_session(_: Request, error: UnknownSession) -> JSONResponse:
        return JSONResponse({"detail": f"no session {error.args[0]!r} (never started, or expired)"}, status_code=404)

    def session(session_id: str) -> Investigation:
        return investigator.get(session_id)

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return Response(STATIC.joinpath("index.html").read_bytes(), media_type="text/html")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {
            "gallery": investigator.gallery.source,
            "images": len(investigator.gallery),
            "strategy": investigator.strategy.name,
            "top_k": investigator.settings.top_k,
            "max_text_chars": investigator.settings.max_text_chars,
        }

    @app.post("/api/sessions")
    def start(body: Description) -> dict[str, Any]:
        return investigator.view(investigator.start(body.description))

    @app.get("/api/sessions/{session_id}")
    def show(session_id: str) -> dict[str, Any]:
        return investigator.view(session(session_id))

    @app.post("/api/sessions/{session_id}/answer")
    def answer(session_id: str, body: Answer) -> dict[str, Any]:
        return investigator.view(investigator.answer(session(session_id), body.kind, body.text))

    @app.post("/api/sessions/{session_id}/reject")
    def reject(session_id: str, body: Mark) -> dict[str, Any]:
        inv = session(session_id)
        removed = investigator.reject(inv, body.key)
        return {**investigator.view(inv), "just_removed": removed}

    @app.post("/api/sessions/{session_id}/accept")
    def accept(session_id: str, body: Mark) -> dict[str, Any]:
        inv = session(session_id)
        investigator.accept(inv, body.key)
        return investigator.view(inv)

    @app.get("/api/sessions/{session_id}/export")
    def export(session_id: str) -> JSONResponse:
        headers = {"Content-Disposition": f'attachment; filename="investigation-{session_id}.json"'}
        return JSONResponse(investigator.export(session(session_id)), headers=headers)

    @app.get("/api/sessions/{session_id}/contact-sheet.png", response_class=Response)
    def contact_sheet(session_id: str) -> Response:
        return Response(investigator.contact_sheet(session(session_id)), media_type="image/png")

    @app.post("/api/sessions/resume")
    async def resume(file: UploadFile = File(description="an exported session (.json)")) -> dict[str, Any]:  # noqa: B008
        if file.content_type not in ("application/json", "text/json"):
            raise HTTPException(415, f"upload {file.filename!r}: expected application/json, got {file.content_type}")
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"upload {file.filename!r}: more than {MAX_UPLOAD_BYTES} bytes")
        try:
            exported = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise HTTPException(400, f"upload {file.filename!r}: not UTF-8 JSON ({error})") from error
        return investigator.view(investigator.resume(exported))

    @app.get("/api/images/{key:path}", response_class=Response)
    def image(key: str) -> Response:
        if key not in investigator.index_of:
            raise HTTPException(404, "no such image in the gallery")
        data = investigator.gallery.images.encoded(key)
        return Response(data, media_type=_image_type(data), headers={"Cache-Control": "max-age=3600"})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


@contextmanager
def serving(investigator: Investigator, timeout_s: float = 30.0) -> Iterator[str]:
    """The app served by uvicorn in a thread on a free port of 127.0.0.1, for a `with` block: its base URL (the
    browser tests, the load benchmark and the screenshots drive it)."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(investigator), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the investigator did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
