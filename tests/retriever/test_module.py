"""The retriever end to end on a tiny world: CLI fit with checkpoints, reload, index and search, DDP."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ireid.retriever import inference
from ireid.retriever.cli import main as retriever_main
from ireid.retriever.index import GalleryIndex
from ireid.retriever.inference import load_retriever
from ireid.retriever.losses import sdm_loss
from ireid.retriever.model import RetrieverNet
from ireid.retriever.module import RetrieverModule

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "retriever" / "synthetic.yaml"


def fit_args(world, out, *extra):
    return [
        "fit", "--config", str(CONFIG), "--data.data_dir", str(world), "--data.num_workers", "0",
        "--data.batch_size", "8", "--trainer.max_steps", "6", "--trainer.check_val_every_n_epoch", "1",
        "--trainer.logger.init_args.save_dir", str(out), "--trainer.enable_progress_bar", "false",
        "--model.text_length", "96", "--model.losses", "sdm+id+mlm", "--trainer.log_every_n_steps", "1", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("retriever_run")
    retriever_main(fit_args(tiny_world, out))
    ckpts = sorted(out.rglob("*.ckpt"))
    return out, ckpts


def test_fit_writes_checkpoints_and_tensorboard_logs(trained):
    out, ckpts = trained
    assert {p.name for p in ckpts} >= {"last.ckpt"} and any(p.name.startswith("best-") for p in ckpts)
    assert list(out.rglob("events.out.tfevents.*"))
    assert list(out.rglob("config.yaml")), "the resolved config is saved beside the logs"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next(out.rglob("events.out.tfevents.*")).parent))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"val/fine/R1", "val/initial/R1", "train/sdm", "train/mlm", "data/skipped_samples"} <= tags
    assert events.Scalars("data/skipped_samples")[-1].value == 0


def test_checkpoint_reloads_safely_with_the_same_embeddings(trained, tiny_world):
    _, ckpts = trained
    last = next(p for p in ckpts if p.name == "last.ckpt")
    a, b = load_retriever(last), load_retriever(last)
    images = torch.randn(3, 3, 128, 64)
    assert torch.equal(a.encode_images(images), b.encode_images(images))
    text = a.encode_text(["a woman in a red top", "a man with a bag"])
    assert text.shape == (2, a.features.embed_dim) and torch.allclose(text.norm(dim=-1), torch.ones(2))
    assert a.hparams.num_ids == 12, "the ID classifier is sized from the train split"


def test_inference_embeds_like_the_lightning_module(trained):
    """inference.py rebuilds the network from the checkpoint alone; its embeddings are the module's, bit for bit."""
    _, ckpts = trained
    last = next(p for p in ckpts if p.name == "last.ckpt")
    net = inference.load_retriever(last)
    module = RetrieverModule.load_from_checkpoint(last, map_location="cpu", weights_only=True).eval()
    assert isinstance(net, RetrieverNet) and not net.training
    saved = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    assert list(net.state_dict()) == list(saved) == list(module.state_dict()), "checkpoint keys are the network's"
    assert all(torch.equal(net.state_dict()[k], saved[k]) for k in saved)
    texts = ["a woman in a red top", "a man with a blue bag and black sneakers", "cap"]
    images = torch.randn(3, 3, 128, 64)
    with torch.no_grad():
        assert torch.equal(net.encode_text(texts), module.encode_text(texts))
        assert torch.equal(net.encode_images(images), module.encode_images(images))
    crops = [Image.new("RGB", (40 + 10 * i, 100), (30 * i, 120, 200)) for i in range(3)]
    assert torch.equal(inference.image_embedder(net)(crops), inference.image_embedder(module)(crops))
    assert torch.equal(inference.encode_text(net, texts), inference.encode_text(module, texts))
    assert net.hparams.num_ids == module.hparams.num_ids == 12
    # The TextImageRetriever adapter: from the checkpoint alone, or around a LightningModule, the same outputs.
    loaded, wrapped = inference.ModuleRetriever.from_checkpoint(last), inference.ModuleRetriever(module)
    assert torch.equal(loaded.encode_text(texts), wrapped.encode_text(texts))
    assert torch.equal(loaded.encode_images(crops), wrapped.encode_images(crops))


def test_index_and_search_cli(trained, tiny_world, tmp_path, capsys):
    _, ckpts = trained
    last = str(next(p for p in ckpts if p.name == "last.ckpt"))
    assert retriever_main(["index", "--ckpt", last, "--shards", str(tiny_world), "--out", str(tmp_path / "ix")]) == 0
    assert "indexed 12 images" in capsys.readouterr().out
    code = retriever_main(["search", "--index", str(tmp_path / "ix"), "--ckpt", last, "--text", "a woman", "--k", "5"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 5
    scores = [float(line.split()[1]) for line in lines]
    assert scores == sorted(scores, reverse=True) and all(" test/syn" in line for line in lines)
    assert retriever_main(["search", "--index", str(tmp_path / "nope"), "--ckpt", last, "--text", "x"]) == 2


def test_seed_reaches_model_and_data(tiny_world, tmp_path):
    from ireid.retriever.cli import RetrieverCLI
    from ireid.retriever.data import RetrievalDataModule

    args = fit_args(tiny_world, tmp_path, "--seed_everything", "3")[1:]
    parser_kwargs = {"parser_mode": "omegaconf"}
    cli = RetrieverCLI(RetrieverModule, RetrievalDataModule, parser_kwargs=parser_kwargs, args=args, run=False)
    assert cli.model.hparams.seed == cli.datamodule.hparams.seed == 3


def test_param_groups_follow_irra(tiny_world):
    module = RetrieverModule(str(tiny_world), lr=1e-3, new_module_lr_factor=5, bias_lr_factor=2,
                             weight_decay=0.1, weight_decay_bias=0.0, text_length=64)  # fmt: skip
    groups = {g["name"]: g for g in module.param_groups()}
    assert groups["clip"]["lr"] == 1e-3 and groups["clip"]["weight_decay"] == 0.1
    assert groups["new"]["lr"] == 5e-3 and groups["clip-bias"]["lr"] == 2e-3
    assert groups["new-bias"]["weight_decay"] == 0.0
    new = {id(p) for p in groups["new"]["params"]}
    assert id(module.classifier.weight) in new and id(module.mlm.head.fc.weight) in new
    total = sum(len(g["params"]) for g in groups.values())
    assert total == sum(1 for p in module.parameters() if p.requires_grad)
    assert not module.features.clip.logit_scale.requires_grad


def test_attribute_heads_take_their_own_lr_factor(tiny_world):
    module = RetrieverModule(str(tiny_world), losses="sdm+attr", lr=1e-3, new_module_lr_factor=5, attr_lr_factor=50,
                             text_length=64)  # fmt: skip
    groups = {g["name"]: g for g in module.param_groups()}
    assert groups["attr"]["lr"] == pytest.approx(5e-2) and groups["new-bias"]["lr"] == pytest.approx(2e-3)
    heads = {id(head.weight) for head in module.attribute_heads.heads}
    assert heads == {id(p) for p in groups["attr"]["params"]}
    with pytest.raises(ValueError, match="attr_lr_factor must be positive"):
        RetrieverModule(str(tiny_world), losses="sdm+attr", attr_lr_factor=0.0, text_length=64)


def test_partial_pairs_add_a_second_sdm_term_over_the_same_images(tiny_world):
    module = RetrieverModule(str(tiny_world), losses="sdm", text_length=64).eval()
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, float(value))
    torch.manual_seed(0)
    images, pids = torch.randn(4, 3, 128, 64), torch.tensor([0, 0, 1, 2])
    texts = ["a man in a red top", "a man in red", "a woman with a bag", "a child in blue"]
    partial = ["a man", "a man in red", "a woman", "a child"]
    batch = {"images": images, "pids": pids, "texts": texts, "partial_texts": partial}
    with torch.no_grad():
        loss = module.training_step(batch, 0)
        image = module.features.image_tokens(images)[:, 0]

        def sdm_of(strings):
            feats = module.features.text_tokens(**module.tokenize(strings))[1]
            return sdm_loss(image, feats, pids, 1 / module.hparams.temperature)

        assert logged["train/sdm"] == pytest.approx(float(sdm_of(texts)), rel=1e-5)
        assert logged["train/sdm_partial"] == pytest.approx(float(sdm_of(partial)), rel=1e-5)
        assert float(loss) == pytest.approx(float(sdm_of(texts) + sdm_of(partial)), rel=1e-5)
        module.training_step({**batch, "partial_texts": None}, 0)
        assert float(logged["train/loss"]) == pytest.approx(float(sdm_of(texts)), rel=1e-5)


def test_unknown_loss_set_is_an_error(tiny_world):
    with pytest.raises(ValueError, match="losses must be one of"):
        RetrieverModule(str(tiny_world), losses="sdm+itc")


def test_ddp_on_two_cpu_processes(tiny_world, tmp_path):
    """`--trainer.devices 2 --trainer.strategy ddp` trains with gloo on CPU (the SDM all-gather included)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    args = fit_args(tiny_world, tmp_path, "--trainer.devices", "2", "--trainer.strategy", "ddp")
    done = subprocess.run([sys.executable, "-m", "ireid.retriever", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "distributed_backend=gloo" in done.stderr + done.stdout
    assert "All distributed processes registered" in done.stderr + done.stdout
    assert list(tmp_path.rglob("last.ckpt"))


def test_indexing_shared_among_processes_writes_the_same_gallery(trained, tiny_world, tmp_path, capsys):
    _, ckpts = trained
    last = str(next(p for p in ckpts if p.name == "last.ckpt"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each forked process runs with: the same arithmetic, so the same bytes
    try:
        args = ["index", "--ckpt", last, "--shards", str(tiny_world), "--batch-size", "4"]
        assert retriever_main([*args, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert retriever_main([*args, "--processes", "2", "--out", str(tmp_path / "two")]) == 0
    one, two = GalleryIndex.load(tmp_path / "one"), GalleryIndex.load(tmp_path / "two")
    assert one.keys == two.keys and np.array_equal(one.pids, two.pids)
    assert np.array_equal(np.asarray(one.embeddings), np.asarray(two.embeddings))
    assert "indexed 12 images" in capsys.readouterr().out


def test_an_empty_folder_and_a_bad_k_are_one_line(trained, tmp_path, capsys):
    _, ckpts = trained
    last = str(next(p for p in ckpts if p.name == "last.ckpt"))
    (tmp_path / "empty").mkdir()
    assert (
        retriever_main(["index", "--ckpt", last, "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "x")])
        == 2
    )
    assert "empty: no .jpg, .jpeg or .png images to index" in capsys.readouterr().err
    assert (
        retriever_main(["search", "--index", str(tmp_path / "x"), "--ckpt", last, "--text", "a man", "--k", "0"]) == 2
    )
    assert "--k must be at least 1, got 0" in capsys.readouterr().err
