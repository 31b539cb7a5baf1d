"""Config composition (`defaults:`) and the shared LightningCLI base."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ireid.core.lightning_cli import ConfigCompositionError, compose_config, expand_configs, merge


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_merge_is_recursive_for_mappings_and_replaces_everything_else() -> None:
    base = {"trainer": {"devices": 1, "callbacks": [1, 2], "logger": {"name": "a", "dir": "runs"}}, "seed": 0}
    over = {"trainer": {"callbacks": [3], "logger": {"name": "b"}}, "model": {"lr": 0.1}}
    assert merge(base, over) == {
        "trainer": {"devices": 1, "callbacks": [3], "logger": {"name": "b", "dir": "runs"}},
        "seed": 0,
        "model": {"lr": 0.1},
    }
    assert base["trainer"]["logger"]["name"] == "a"  # inputs are left as they were


def test_defaults_compose_in_order_relative_to_the_file(tmp_path: Path) -> None:
    write(tmp_path / "trainer" / "cpu.yaml", {"trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 10}})
    write(tmp_path / "logger" / "tb.yaml", {"trainer": {"logger": {"class_path": "TB", "init_args": {"name": "x"}}}})
    write(tmp_path / "base" / "shared.yaml", {"defaults": ["../trainer/cpu.yaml"], "trainer": {"max_steps": 20}})
    experiment = write(
        tmp_path / "exp" / "run.yaml",
        {
            "defaults": ["../base/shared.yaml", "../logger/tb.yaml"],
            "trainer": {"logger": {"init_args": {"save_dir": "runs/x"}}},
        },
    )
    assert compose_config(experiment) == {
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": 20,
            "logger": {"class_path": "TB", "init_args": {"name": "x", "save_dir": "runs/x"}},
        }
    }


def test_bad_defaults_name_the_file(tmp_path: Path) -> None:
    missing = write(tmp_path / "a.yaml", {"defaults": ["nowhere.yaml"]})
    with pytest.raises(ConfigCompositionError, match=r"nowhere.yaml: config file not found \(a default of .*a.yaml\)"):
        compose_config(missing)
    not_a_list = write(tmp_path / "b.yaml", {"defaults": "other.yaml"})
    with pytest.raises(ConfigCompositionError, match="field 'defaults' must be a list"):
        compose_config(not_a_list)
    write(tmp_path / "c.yaml", {"defaults": ["d.yaml"]})
    write(tmp_path / "d.yaml", {"defaults": ["c.yaml"]})
    with pytest.raises(ConfigCompositionError, match="cycle"):
        compose_config(tmp_path / "c.yaml")


def test_expand_configs_composes_only_files_with_defaults(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", {"trainer": {"devices": 1}})
    plain = write(tmp_path / "plain.yaml", {"trainer": {"devices": 2}})
    overlay = write(tmp_path / "overlay.yaml", {"defaults": ["base.yaml"], "seed_everything": 3})
    args = expand_configs(["fit", "--config", str(plain), f"--config={overlay}", "--trainer.max_steps", "5"])
    assert args[:3] == ["fit", "--config", str(plain)] and args[-2:] == ["--trainer.max_steps", "5"]
    composed = Path(args[3].split("=", 1)[1])
    assert composed != overlay and yaml.safe_load(composed.read_text()) == {
        "trainer": {"devices": 1},
        "seed_everything": 3,
    }


def test_every_repository_config_composes() -> None:
    """Each experiment config in configs/ resolves its defaults (group files are composed as they are)."""
    configs = Path(__file__).resolve().parents[2] / "configs"
    files = sorted(configs.rglob("*.yaml"))
    assert files
    for path in files:
        assert isinstance(compose_config(path), dict), path
