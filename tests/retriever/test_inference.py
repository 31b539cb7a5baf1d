"""inference.py: the network without Lightning, its settings, batching helpers, the folder embedder, load errors.

That a checkpoint loaded here embeds exactly like the LightningModule is checked in test_module.py (on the
checkpoint trained there) and test_attributes_head.py (an `sdm+attr` checkpoint).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from PIL import Image

from ireid.core.loader import SkipCounter
from ireid.core.person_vision import VisionTowerFile
from ireid.retriever import inference
from ireid.retriever.inference import ensure_vision_tower
from ireid.retriever.model import RetrieverNet, RetrieverSettings, build_retriever_net
from ireid.retriever.module import RetrieverModule
from tests.helpers import jpeg, png


def test_settings_are_the_module_arguments_with_the_same_defaults():
    module_args = inspect.signature(RetrieverModule.__init__).parameters
    for name, param in inspect.signature(RetrieverSettings).parameters.items():
        assert name in module_args, f"{name} is not a RetrieverModule argument"
        assert param.default == module_args[name].default, name


def test_settings_from_hparams_ignore_training_keys():
    hparams = {"data_dir": "d", "losses": "sdm", "image_size": [96, 48], "lr": 1e-3, "_instantiator": "x"}
    settings = RetrieverSettings.from_hparams(hparams)
    assert settings == RetrieverSettings("d", losses="sdm", image_size=(96, 48))


@pytest.fixture(scope="module")
def net(tiny_world: Path) -> RetrieverNet:
    return build_retriever_net(RetrieverSettings(str(tiny_world), losses="sdm", text_length=64)).eval()


def test_a_fresh_network_has_only_the_heads_its_losses_use(net: RetrieverNet):
    assert net.classifier is None and net.mlm is None and net.attribute_heads is None
    assert {k.split(".")[0] for k in net.state_dict()} == {"features"}
    assert net.image_size == (128, 64) and net.text_length == 64 and net.device == torch.device("cpu")


def test_batched_encoding_matches_one_call(net: RetrieverNet):
    texts = ["a woman in a red top", "a man", "black sneakers and a grey backpack", "cap", "glasses"]
    with torch.no_grad():
        whole = net.encode_text(texts)
    assert torch.allclose(inference.encode_text(net, texts, batch_size=2), whole, atol=1e-5)
    images = [Image.new("RGB", (30 + i, 80), (40 * i, 90, 160)) for i in range(5)]
    one = inference.image_embedder(net)(images)
    assert torch.allclose(inference.encode_images(net, images, batch_size=2), one, atol=1e-5)
    with pytest.raises(ValueError, match="at least one"):
        inference.encode_text(net, [])
    with pytest.raises(ValueError, match="batch_size"):
        inference.encode_images(net, images, batch_size=0)


def test_embed_image_folder_keys_and_skips(net: RetrieverNet, tmp_path: Path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.jpg").write_bytes(jpeg((200, 30, 30)))
    (tmp_path / "b" / "c.png").write_bytes(png((30, 30, 200)))
    (tmp_path / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    skips = SkipCounter()
    keys, feats = inference.embed_image_folder(net, tmp_path, batch_size=1, skips=skips)
    assert keys == ["a.jpg", "b/c.png"] and skips.value == 1
    images = [Image.open(tmp_path / key).convert("RGB") for key in keys]
    assert torch.allclose(feats, inference.encode_images(net, images), atol=1e-5)
    (tmp_path / "a.jpg").unlink()
    (tmp_path / "b" / "c.png").unlink()
    with pytest.raises(ValueError, match="no readable"):
        inference.embed_image_folder(net, tmp_path)


def test_checkpoint_errors(net: RetrieverNet, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        inference.load_retriever(tmp_path / "missing.ckpt")
    with pytest.raises(ValueError, match="hyper_parameters"):
        inference.retriever_from_checkpoint({"state_dict": {}})
    hparams = {"data_dir": net.settings.data_dir, "losses": "sdm+id", "num_ids": 12, "text_length": 64}
    with pytest.raises(RuntimeError, match="classifier"):  # strict: a head without weights is an error
        inference.retriever_from_checkpoint({"hyper_parameters": hparams, "state_dict": net.state_dict()})


def test_a_pipelines_tower_file_is_kept_when_it_reads_and_written_again_when_stale(tower_file, tmp_path) -> None:
    retriever = tower_file.parent / "retriever.ckpt"
    kept = tmp_path / "kept.pt"
    kept.write_bytes(tower_file.read_bytes())
    stamp = kept.stat().st_mtime_ns
    assert ensure_vision_tower(retriever, kept) == kept and kept.stat().st_mtime_ns == stamp
    stale = tmp_path / "stale.pt"
    record = torch.load(tower_file, weights_only=True)
    del record["projection"]
    torch.save({**record, "format": "ireid.person-vision-tower/1"}, stale)
    ensure_vision_tower(retriever, stale)
    assert torch.equal(VisionTowerFile.load(stale).projection, VisionTowerFile.load(tower_file).projection)
    missing = ensure_vision_tower(retriever, tmp_path / "new" / "tower.pt")
    assert VisionTowerFile.load(missing).image_hw == VisionTowerFile.load(tower_file).image_hw
