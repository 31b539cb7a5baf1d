"""The per-attribute auxiliary loss: vocabulary from records, hand-computed value, gradients, errors."""

import math
from pathlib import Path

import pytest
import torch

from ireid.core.shards import DatasetWriter
from ireid.retriever.attributes_head import AttributeHeads, attribute_vocabulary
from ireid.retriever.data import RetrievalDataModule
from ireid.retriever.inference import load_retriever
from ireid.retriever.module import RetrieverModule
from tests.helpers import jpeg, make_record

TOY = {"hat": ["cap", "none"], "shoes": ["boots", "sandals", "sneakers"]}


def toy_heads() -> AttributeHeads:
    heads = AttributeHeads(2, TOY)
    with torch.no_grad():
        heads.heads[0].weight.copy_(torch.eye(2))  # hat logits = the features
        heads.heads[0].bias.zero_()
        heads.heads[1].weight.zero_()  # shoes logits all 0: uniform over 3 values
        heads.heads[1].bias.zero_()
    return heads


def test_vocabulary_comes_from_the_records_sorted():
    records = [
        make_record(0, attributes={"shoes": "sneakers", "hat": "none"}),
        make_record(1, attributes={"shoes": "boots", "hat": "cap"}),
        make_record(2, attributes={"shoes": "sandals", "hat": "cap"}),
    ]
    assert attribute_vocabulary(records, "train") == TOY


def test_unannotated_attributes_are_ignored_and_unknown_values_are_a_clear_error():
    with pytest.raises(ValueError, match=r"shards \(train\).*'attributes'"):
        attribute_vocabulary([make_record(0), make_record(1)], "shards (train)")
    heads = toy_heads()
    labels = heads.labels([{"hat": "cap", "shoes": "boots"}, {"hat": "cap"}], ["k0", "k1"])
    assert labels.tolist() == [[0, 0], [0, -100]]
    feats = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    # shoes is scored on the first sample only; hat on both
    expected = (heads.heads[0](feats).log_softmax(1)[:, 0].mean() + heads.heads[1](feats[:1]).log_softmax(1)[0, 0]) / -2
    assert heads.loss(feats, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    assert heads.loss(feats, torch.full((2, 2), -100)).item() == 0.0
    with pytest.raises(ValueError, match=r"record 'k0'.*'clogs' is not in the vocabulary"):
        heads.labels([{"hat": "cap", "shoes": "clogs"}], ["k0"])


def test_attribute_loss_by_hand_and_gradients_reach_classifiers_and_features():
    heads = toy_heads()
    labels = heads.labels([{"hat": "cap", "shoes": "sandals"}], ["k"])
    assert labels.tolist() == [[0, 1]]
    feats = torch.tensor([[2.0, 0.0]], requires_grad=True)
    loss = heads.loss(feats, labels)
    # hat: CE([2, 0], 0) = log(1 + e^-2); shoes: uniform over 3 -> log 3; averaged over the 2 attributes
    assert loss.item() == pytest.approx((math.log(1 + math.exp(-2)) + math.log(3)) / 2, rel=1e-6)
    loss.backward()
    assert feats.grad.abs().sum() > 0
    assert all(head.weight.grad.abs().sum() > 0 for head in heads.heads)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_module_requests_attributes_from_the_data(tiny_world, tmp_path):
    module = RetrieverModule(str(tiny_world), losses="sdm+attr", text_length=96, temperature=0.07)
    assert set(module.hparams.attribute_values) >= {"hat", "glasses", "shoes_type"}
    assert module.use_attr and not module.use_id
    groups = {g["name"]: g for g in module.param_groups()}
    assert id(module.attribute_heads.heads[0].weight) in {id(p) for p in groups["attr"]["params"]}
    assert groups["attr"]["lr"] == module.hparams.lr * module.hparams.new_module_lr_factor, "IRRA's factor by default"
    assert id(module.attribute_heads.heads[0].bias) in {id(p) for p in groups["new-bias"]["params"]}

    data = RetrievalDataModule(str(tiny_world), batch_size=6, num_workers=0, partial_text_prob=0.5)
    batch = next(iter(data.train_dataloader()))
    loss = module.training_step(batch, 0)
    loss.backward()
    assert all(
        head.weight.grad is not None and head.weight.grad.abs().sum() > 0 for head in module.attribute_heads.heads
    )

    writer = DatasetWriter(tmp_path)
    for i in range(2):
        writer.write(make_record(i), jpeg())
    writer.close()
    with pytest.raises(ValueError, match="'attr' loss needs records with an 'attributes' object"):
        RetrieverModule(str(tmp_path), losses="sdm+attr")


def test_loss_sets_are_sdm_plus_known_terms(tiny_world):
    for bad in ("sdm+itc", "id+sdm", "sdm+attr+attr"):
        with pytest.raises(ValueError, match="losses must be one of"):
            RetrieverModule(str(tiny_world), losses=bad)


def test_fit_with_attr_and_partial_texts_logs_every_view(tiny_world, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ireid.retriever.cli import main as retriever_main

    config = Path(__file__).resolve().parents[2] / "configs" / "retriever" / "synthetic.yaml"
    retriever_main([
        "fit", "--config", str(config), "--data.data_dir", str(tiny_world), "--data.batch_size", "8",
        "--data.partial_text_prob", "0.5", "--model.losses", "sdm+attr", "--model.text_length", "96",
        "--trainer.max_steps", "3", "--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1",
        "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
    ])  # fmt: skip
    events = EventAccumulator(str(next(tmp_path.rglob("events.out.tfevents.*")).parent))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/attr", "val/fine/R1", "val/initial/R1", "val/partial/R1", "val/partial/mAP"} <= tags
    # The module stores the vocabulary it read, so the checkpoint rebuilds its heads without the train split.
    last = next(tmp_path.rglob("last.ckpt"))
    net = load_retriever(last)
    module = RetrieverModule.load_from_checkpoint(last, map_location="cpu", weights_only=True).eval()
    stored = torch.load(last, map_location="cpu", weights_only=True)["hyper_parameters"]["attribute_values"]
    assert net.hparams.attribute_values == module.hparams.attribute_values == stored
    assert set(net.hparams.attribute_values) >= {"hat", "glasses", "shoes_type"}
    assert (
        net.classifier is None
        and net.mlm is None
        and len(net.attribute_heads.heads) == len(module.attribute_heads.heads)
    )
    with torch.no_grad():
        texts = ["he wore a cap", "a woman with glasses"]
        assert torch.equal(net.encode_text(texts), module.encode_text(texts))
