"""Every route of the investigator's API, with the bad inputs a page or a script could send."""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from ireid.app.cli import main
from ireid.app.investigator.gallery import STATE_FILE, index_folder
from ireid.app.investigator.server import MAX_UPLOAD_BYTES
from ireid.app.investigator.session import EXPORT_FORMAT, Investigator
from ireid.core.converters.common import PNG_MAGIC
from ireid.retriever.index import GalleryIndexError


def start(client: TestClient, description: str = "I saw a woman in a red top.") -> dict:
    response = client.post("/api/sessions", json={"description": description})
    assert response.status_code == 200, response.text
    return response.json()


def test_info_and_openapi_describe_the_service(client: TestClient, investigator: Investigator) -> None:
    info = client.get("/api/info").json()
    assert info["images"] == len(investigator.gallery) and info["strategy"] == "expected-gain" and info["top_k"] == 6
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/sessions", "/api/sessions/{session_id}/answer", "/api/images/{key}"} <= set(paths)
    assert "ireid investigator" in client.get("/").text


def test_a_session_ranks_asks_and_takes_every_kind_of_answer(client: TestClient) -> None:
    view = start(client)
    assert len(view["candidates"]) == 6 and view["question"] and len(view["top_scores"]) == 1
    assert [c["rank"] for c in view["candidates"]] == [1, 2, 3, 4, 5, 6]
    assert all(c["change"] is None for c in view["candidates"])
    sid = view["session"]
    for kind, text in (("yes", None), ("no", None), ("dont_know", None), ("text", "She wore black shoes.")):
        asked = view["question"]
        view = client.post(f"/api/sessions/{sid}/answer", json={"kind": kind, "text": text}).json()
        assert view["history"][-1]["question"] == asked and view["history"][-1]["kind"] == kind
    assert [t["answer"] for t in view["history"]][1:] == ["No.", "I don't know.", "She wore black shoes."]
    assert view["history"][0]["answer"].startswith("Yes, ")  # the question's content, for the retriever
    assert len(view["top_scores"]) == 5
    assert all(isinstance(c["change"], int) for c in view["candidates"])
    assert client.get(f"/api/sessions/{sid}").json() == view


def test_rank_changes_are_the_difference_of_ranks(client: TestClient, investigator: Investigator) -> None:
    sid = start(client)["session"]
    view = client.post(f"/api/sessions/{sid}/answer", json={"kind": "text", "text": "He carried a black bag."}).json()
    inv = investigator.get(sid)
    for candidate in view["candidates"]:
        row = investigator.index_of[candidate["key"]]
        assert candidate["change"] == int(inv.previous_ranks[row]) - int(inv.ranks[row])


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"description": ""}, 400, "description: empty text"),
        ({"description": "x" * 10_000}, 400, "10000 characters, more than 1000"),
        ({}, 422, "description"),
        ({"description": 3}, 422, "string"),
    ],
)
def test_bad_descriptions_are_one_clear_error(client: TestClient, body: dict, status: int, detail: str) -> None:
    response = client.post("/api/sessions", json=body)
    assert response.status_code == status and detail in json.dumps(response.json()["detail"])


def test_malformed_json_and_bad_answers(client: TestClient) -> None:
    response = client.post("/api/sessions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and "JSON" in json.dumps(response.json())
    sid = start(client)["session"]
    assert client.post(f"/api/sessions/{sid}/answer", json={"kind": "maybe"}).status_code == 422
    empty = client.post(f"/api/sessions/{sid}/answer", json={"kind": "text", "text": "  "})
    assert empty.status_code == 400 and empty.json()["detail"] == "answer: empty text"
    assert client.get(f"/api/sessions/{sid}").json()["history"] == []  # nothing recorded by a refused answer


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/sessions/{sid}", None),
        ("post", "/api/sessions/{sid}/answer", {"kind": "yes"}),
        ("post", "/api/sessions/{sid}/reject", {"key": "x"}),
        ("post", "/api/sessions/{sid}/accept", {"key": "x"}),
        ("get", "/api/sessions/{sid}/export", None),
        ("get", "/api/sessions/{sid}/contact-sheet.png", None),
    ],
)
def test_an_unknown_session_is_404_on_every_route(client: TestClient, method: str, path: str, body) -> None:
    response = getattr(client, method)(path.format(sid="no-such-session"), **({"json": body} if body else {}))
    assert response.status_code == 404 and "no session 'no-such-session'" in response.json()["detail"]


def test_not_them_removes_the_image_and_its_look_alikes(client: TestClient, investigator: Investigator) -> None:
    view = start(client)
    sid, first = view["session"], view["candidates"][0]["key"]
    marked = client.post(f"/api/sessions/{sid}/reject", json={"key": first}).json()
    assert marked["just_removed"][0] == first and marked["rejected"] == [first]
    assert first not in {c["key"] for c in marked["candidates"]} and marked["removed"] == len(marked["just_removed"])
    embeddings = investigator.gallery.gallery.embeddings
    row = investigator.index_of[first]
    for key in marked["just_removed"][1:]:  # look-alikes: at least the threshold's cosine to the marked image
        assert float(embeddings[investigator.index_of[key]] @ embeddings[row]) >= 0.99
    unknown = client.post(f"/api/sessions/{sid}/reject", json={"key": "../../etc/passwd"})
    assert unknown.status_code == 400 and "not in the gallery" in unknown.json()["detail"]


def test_this_is_them_ends_the_session(client: TestClient) -> None:
    view = start(client)
    sid, key = view["session"], view["candidates"][2]["key"]
    done = client.post(f"/api/sessions/{sid}/accept", json={"key": key}).json()
    assert done["finished"] and done["accepted"] == key and done["question"] is None
    late = client.post(f"/api/sessions/{sid}/answer", json={"kind": "yes"})
    assert late.status_code == 400 and "finished" in late.json()["detail"]


def test_sessions_are_isolated(client: TestClient) -> None:
    one, two = start(client, "I saw a man in a blue coat."), start(client, "I saw a woman in a red top.")
    assert one["session"] != two["session"]
    client.post(f"/api/sessions/{one['session']}/answer", json={"kind": "text", "text": "He had a hat."})
    client.post(f"/api/sessions/{one['session']}/reject", json={"key": one["candidates"][0]["key"]})
    assert client.get(f"/api/sessions/{two['session']}").json() == two


def test_export_contact_sheet_and_resume(client: TestClient) -> None:
    view = start(client)
    sid = view["session"]
    client.post(f"/api/sessions/{sid}/answer", json={"kind": "text", "text": "She wore black shoes."})
    client.post(f"/api/sessions/{sid}/reject", json={"key": view["candidates"][1]["key"]})
    client.post(f"/api/sessions/{sid}/accept", json={"key": view["candidates"][0]["key"]})
    exported = client.get(f"/api/sessions/{sid}/export")
    assert "attachment" in exported.headers["content-disposition"]
    data = exported.json()
    assert data["format"] == EXPORT_FORMAT and data["accepted"] == view["candidates"][0]["key"]
    sheet = client.get(f"/api/sessions/{sid}/contact-sheet.png")
    assert sheet.headers["content-type"] == "image/png" and sheet.content.startswith(PNG_MAGIC)
    Image.open(io.BytesIO(sheet.content)).verify()
    upload = {"file": ("session.json", json.dumps(data).encode(), "application/json")}
    resumed = client.post("/api/sessions/resume", files=upload).json()
    assert resumed["session"] != sid
    for field in ("description", "history", "rejected", "accepted", "top_scores", "candidates"):
        assert resumed[field] == data[field], field


@pytest.mark.parametrize(
    ("name", "content", "kind", "status", "detail"),
    [
        ("s.json", b"{}", "image/png", 415, "expected application/json"),
        ("s.json", b" " * (MAX_UPLOAD_BYTES + 1), "application/json", 413, "more than"),
        ("s.json", b"\xff\xfe{", "application/json", 400, "not UTF-8 JSON"),
        ("s.json", b'{"format": "other"}', "application/json", 400, "field 'format'"),
        (
            "s.json",
            b'{"format": "ireid-investigation/1", "description": "x", "rejected": ["nope"]}',
            "application/json",
            400,
            "'nope' is not in the gallery",
        ),
    ],
)
def test_uploads_are_size_limited_and_type_checked(client: TestClient, name, content, kind, status, detail) -> None:
    response = client.post("/api/sessions/resume", files={"file": (name, content, kind)})
    assert response.status_code == status and detail in response.json()["detail"]


def test_images_are_served_only_by_gallery_key(client: TestClient, investigator: Investigator) -> None:
    key = investigator.gallery.gallery.keys[0]
    image = client.get(f"/api/images/{key}")
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/")
    Image.open(io.BytesIO(image.content)).verify()
    for probe in ("../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "test/../../x", "no-such-key"):
        assert client.get(f"/api/images/{probe}").status_code == 404, probe


def _folder(root: Path, names: list[str]) -> Path:
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 32), (40 * i % 255, 90, 160)).save(root / name)
    return root


class CountingRetriever:
    """The tiny retriever, counting the images it encodes."""

    def __init__(self, inner) -> None:
        self.inner, self.encoded = inner, 0

    def encode_text(self, texts):
        return self.inner.encode_text(texts)

    def encode_images(self, images):
        self.encoded += len(images)
        return self.inner.encode_images(images)


def test_a_folder_is_indexed_once_then_only_its_new_files(tmp_path: Path, retriever, retriever_ckpt: Path) -> None:
    folder = _folder(tmp_path / "crops", ["cam1/a.png", "cam1/b.jpg", "cam2/c.png"])
    (folder / "notes.txt").write_text("not an image")
    counting = CountingRetriever(retriever)
    first = index_folder(folder, counting, retriever_ckpt, progress=False)
    assert first.gallery.keys == ["cam1/a.png", "cam1/b.jpg", "cam2/c.png"] and counting.encoded == 3
    assert (tmp_path / "crops.ireid-index" / STATE_FILE).is_file()  # beside the folder, not inside it
    again = index_folder(folder, counting, retriever_ckpt, progress=False)
    assert counting.encoded == 3 and again.gallery.embeddings.allclose(first.gallery.embeddings, atol=1e-3)
    _folder(folder, ["cam3/d.png"])
    (folder / "cam1" / "b.jpg").unlink()
    (folder / "cam2" / "broken.png").write_bytes(PNG_MAGIC + b"garbage")
    updated = index_folder(folder, counting, retriever_ckpt, progress=False)
    assert updated.gallery.keys == ["cam1/a.png", "cam2/c.png", "cam3/d.png"] and updated.skipped == 1
    assert counting.encoded == 3 + 1  # the new file alone (the undecodable one is left out and counted)
    assert updated.images.encoded("cam3/d.png").startswith(PNG_MAGIC)
    with pytest.raises(KeyError):
        updated.images.encoded("../crops.ireid-index/serve.json")


def test_a_symlink_out_of_the_gallery_is_refused(tmp_path: Path, retriever, retriever_ckpt: Path) -> None:
    folder = _folder(tmp_path / "crops", ["a.png"])
    secret = _folder(tmp_path / "private", ["secret.png"])
    os.symlink(secret / "secret.png", folder / "link.png")
    with pytest.raises(GalleryIndexError, match="outside the gallery folder"):
        index_folder(folder, retriever, retriever_ckpt, progress=False)


def test_serve_without_a_demo_or_gallery_says_what_to_do(tmp_path: Path, capsys) -> None:
    assert main(["serve", "--demo", str(tmp_path / "no-demo")]) == 2
    assert "run `make demo` first, or pass --gallery" in capsys.readouterr().err


def test_serve_with_an_attribute_net_asks_with_its_eyes(tiny_world: Path, retriever_ckpt: Path, tmp_path: Path) -> None:
    """`--attribute-net FILE` makes expected-gain:reader the strategy, reading the gallery with that net."""
    from ireid.app.serve_cli import build_investigator, configure
    from ireid.core.attribute_net import annotated_images
    from ireid.core.attribute_net_training import fit_attribute_net

    net = fit_attribute_net(*annotated_images(tiny_world, "train"), steps=2, batch_size=4)
    parser = argparse.ArgumentParser()
    configure(parser)
    flags = ["--data", str(tiny_world), "--retriever-ckpt", str(retriever_ckpt), "--demo", str(tmp_path / "none")]
    investigator = build_investigator(parser.parse_args([*flags, "--attribute-net", str(net.save(tmp_path / "n.pt"))]))
    assert investigator.strategy.name == "expected-gain:reader"
    with pytest.raises(ValueError, match=r"--attribute-net .*missing\.pt: not found"):
        build_investigator(parser.parse_args([*flags, "--attribute-net", str(tmp_path / "missing.pt")]))
