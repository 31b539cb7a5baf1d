"""The visual witness end to end on the tiny world: its SFT data, a ChatReID fit on them, its consistency beside the
text witness, the interactive harness with it, and the bad inputs it must turn into one line or a counted skip."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from PIL import Image

from ireid.app.cli import main
from ireid.chatreid.train_cli import main as chatreid_main
from ireid.core.lightning_cli import compose_config

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "answerer" / "visual-witness-synthetic.yaml"


@pytest.fixture(scope="module")
def witness_ckpt(tiny_world: Path, tower_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`ireid witness build-sft`, then the shipped config for 2 steps: a visual witness checkpoint."""
    out = tmp_path_factory.mktemp("visual_witness")
    assert main(["witness", "build-sft", "--data", str(tiny_world), "--out", str(out / "sft"), "--samples", "40"]) == 0
    counts = json.loads((out / "sft" / "stage3.counts.json").read_text())
    assert counts["counts"] == {"answered": 40} and counts["task"] == "visual_witness"
    config = compose_config(CONFIG)
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(out / "runs")
    config["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(out / "ckpt")
    config["data"].update(conversations_dir=str(out / "sft"), data_dir=str(tiny_world), val_fraction=0.25)
    config["model"]["vision_checkpoint"] = str(tower_file)
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    short = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
             "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]  # fmt: skip
    assert chatreid_main(["fit", "--config", str(out / "config.yaml"), *short]) == 0
    return out / "ckpt" / "best.ckpt"


def test_consistency_scores_the_visual_witnesses_beside_the_text_witness_and_chance(
    tiny_world: Path, tower_file: Path, witness_ckpt: Path, tmp_path: Path, capsys
) -> None:
    heads = tmp_path / "attributes.pt"
    assert main(["witness", "fit-attributes", "--data", str(tiny_world), "--vision-tower", str(tower_file),
                 "--out", str(heads), "--steps", "50"]) == 0  # fmt: skip
    assert "val accuracy: age" in capsys.readouterr().out
    out = tmp_path / "consistency.json"
    visual = [f"visual:chatreid:{witness_ckpt}", f"visual:attributes:{heads}"]
    args = ["witness", "consistency", "--data", str(tiny_world), "--witness", visual[0], "--witness", visual[1],
            "--witness", "rule", "--questions", "6", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    result = json.loads(out.read_text())
    rows = result["witnesses"]
    assert set(rows) == {"chance", *visual, "rule"} and result["questions"] == 6
    assert rows["rule"]["consistent"] == 1.0 and rows["rule"]["unknown"] == 0.0  # it reads the truth back
    assert all(len(row["answers"]) == 6 for row in rows.values())
    assert all(f"| {name} |" in out.with_suffix(".md").read_text() for name in visual)


def test_the_harness_runs_with_the_visual_witness(
    tiny_world: Path, tower_file: Path, witness_ckpt: Path, tmp_path: Path
) -> None:
    ckpt = str(tower_file.parent / "retriever.ckpt")
    args = ["eval", "interactive", "--data", str(tiny_world), "--retriever-ckpt", ckpt, "--witness",
            f"visual:chatreid:{witness_ckpt}", "--strategies", "initial,simirv", "--rounds", "1", "--max-queries", "4",
            "--out", str(tmp_path / "eval")]  # fmt: skip
    assert main(args) == 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert "answers from another gallery image of the target" in json.dumps(results)
    [line] = (tmp_path / "eval" / "strategies" / "simirv" / "conversations.jsonl").read_text().splitlines()[:1]
    assert json.loads(line)["turns"][0]["answer"]


def crops(root: Path, people: dict[str, int]) -> Path:
    """A folder of crops per person (`ireid data convert --format folder`): no description, no Q&A."""
    for split, count in (("train", 2), ("test", 3)):
        for person in range(count):
            for view in range(people.get(f"{split}/{person}", 2)):
                folder = root / split / f"p{person}"
                folder.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (16, 32), (person * 60, view * 60, 90)).save(folder / f"{view}.png")
    return root


def test_data_without_fine_descriptions_asks_for_a_visual_witness_before_starting(
    tower_file: Path, tmp_path: Path, capsys
) -> None:
    data = tmp_path / "data"
    assert main(["data", "convert", "--format", "folder", "--root", str(crops(tmp_path / "crops", {})), "--out",
                 str(data), "--quiet"]) == 0  # fmt: skip
    args = ["eval", "interactive", "--data", str(data), "--retriever-ckpt", str(tower_file.parent / "retriever.ckpt"),
            "--strategies", "initial", "--rounds", "1", "--out", str(tmp_path / "eval")]  # fmt: skip
    assert main(args) == 2
    [error] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert "6 of 6 queries" in error and "--witness visual:<vision model>" in error
    assert not (tmp_path / "eval" / "strategies").exists()  # said before the first batch


def test_a_person_with_one_image_is_skipped_and_counted(
    tower_file: Path, witness_ckpt: Path, tmp_path: Path, capsys
) -> None:
    data = tmp_path / "data"
    root = crops(tmp_path / "crops", {"test/1": 1})
    assert main(["data", "convert", "--format", "folder", "--root", str(root), "--out", str(data), "--quiet"]) == 0
    args = ["eval", "interactive", "--data", str(data), "--retriever-ckpt", str(tower_file.parent / "retriever.ckpt"),
            "--witness", f"visual:chatreid:{witness_ckpt}", "--strategies", "initial", "--rounds", "1",
            "--out", str(tmp_path / "eval")]  # fmt: skip
    assert main(args) == 0
    assert "4 of 5 queries kept; 1 skipped, no other gallery image of the person" in capsys.readouterr().out
    context = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert "no other gallery image of the person" in json.dumps(context)


@pytest.fixture
def rejecting_server() -> Iterator[str]:
    """Answers every request 400, as a text-only model's server answers an image."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    stop = threading.Event()
    body = b'{"error": {"message": "this model does not accept image input"}}'

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.recv(1 << 20)
            head = f"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            conn.sendall(head.encode() + body)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    stop.set()
    thread.join(timeout=5)
    listener.close()


def test_a_server_that_rejects_images_stops_the_run_in_one_line_before_it_starts(
    rejecting_server: str, tiny_world: Path, tower_file: Path, tmp_path: Path, capsys
) -> None:
    args = ["eval", "interactive", "--data", str(tiny_world), "--retriever-ckpt",
            str(tower_file.parent / "retriever.ckpt"), "--witness", f"visual:openai:{rejecting_server}#m",
            "--strategies", "initial", "--rounds", "1", "--max-retries", "1",
            "--out", str(tmp_path / "eval")]  # fmt: skip
    assert main(args) == 2
    [error] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert rejecting_server in error and "before the first batch" in error
    assert not (tmp_path / "eval" / "strategies").exists()


def test_released_qwen2_vl_weights_at_a_path_answer_as_a_witness(tiny_world: Path, tmp_path: Path) -> None:
    """`visual:qwen2-vl:<dir>`: a model folder as `save_pretrained` writes it (here a tiny one), no checkpoint."""
    from ireid.answerer import VisualWitness, build_witness
    from ireid.app.vision_models import vision_model
    from ireid.core.factory import build_model
    from ireid.core.tokenizer import dataset_tokenizer

    built = build_model("qwen2-vl", "tiny", tokenizer=dataset_tokenizer(tiny_world, 2048))
    built.model.save_pretrained(tmp_path / "qwen2-vl")
    built.processor.save_pretrained(tmp_path / "qwen2-vl")
    witness = build_witness(f"visual:qwen2-vl:{tmp_path / 'qwen2-vl'}", vision_model=vision_model, max_new_tokens=4)
    assert isinstance(witness, VisualWitness)
    [answer] = witness.answer(["What colour was the person's top?"], [Image.new("RGB", (64, 128), "red")])
    assert isinstance(answer, str) and answer
    with pytest.raises(FileNotFoundError, match="no Qwen2-VL weights folder"):
        vision_model(f"qwen2-vl:{tmp_path / 'missing'}")
