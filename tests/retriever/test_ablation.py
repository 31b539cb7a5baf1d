import json

from ireid.retriever import ablation_cli

FAST = [
    *("--data.num_workers", "0", "--data.batch_size", "8", "--trainer.max_steps", "3"),
    *("--trainer.check_val_every_n_epoch", "1", "--trainer.enable_progress_bar", "false", "--model.text_length", "96"),
]


def test_ablation_writes_a_table_and_resumes_without_retraining(tiny_world, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ablation"
    args = ["--out", str(out), "--variants", "sdm", "sdm+id, RDA", "--", "--data.data_dir", str(tiny_world), *FAST]
    assert ablation_cli.main(args) == 0
    result = json.loads((out / "sdm.json").read_text())
    assert 0 <= result["fine/R1"] <= 100 and result["steps"] == 3
    table = (out / "ablation.md").read_text()
    assert table.splitlines()[2].startswith("| sdm | ") and "| sdm+id, RDA | " in table

    def no_training(*_):
        raise AssertionError("a finished variant must not be trained again")

    monkeypatch.setattr(ablation_cli, "run_variant", no_training)
    capsys.readouterr()
    assert ablation_cli.main(args) == 0
    assert "| sdm | " in capsys.readouterr().out
