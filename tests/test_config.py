"""Frozen configs: YAML, overrides, type checks and clear errors."""

from __future__ import annotations

import dataclasses

import pytest

from aecnn.config import load_config, to_dict
from aecnn.errors import ConfigError
from aecnn.training import TrainConfig


def test_yaml_then_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("optim:\n  lr: 1\n  epochs: 3\nmodel:\n  name: resnet18\n")
    cfg = load_config(TrainConfig, tmp_path / "c.yaml", ["optim.lr=0.5", "data.subset=4"])
    assert cfg.optim.lr == 0.5 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.epochs == 3 and cfg.model.name == "resnet18" and cfg.data.subset == 4
    assert load_config(TrainConfig, base=to_dict(cfg)) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(("override", "message"), [
    ("optim.lrr=1", "unknown config key optim.lrr"),
    ("optim.epochs=many", "optim.epochs: expected int"),
    ("optim.name=adam", "is not one of"),
    ("noequals", "key=value"),
    ("data.subset=true", "data.subset"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, None, [override])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(TrainConfig, tmp_path / "none.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(TrainConfig, tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("optim: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(TrainConfig, tmp_path / "bad.yaml")


def test_floats_in_exponent_form_without_a_dot():
    """YAML 1.1 reads ``1e-5`` as a string; a float field takes it as the number."""
    from aecnn.errors import ConfigError
    from aecnn.training.entropic import EntropicConfig

    assert load_config(EntropicConfig, None, ["rate_weight=1e-5"]).rate_weight == 1e-5
    assert load_config(EntropicConfig, None, ["rate_weight=3E-4"]).rate_weight == 3e-4
    with pytest.raises(ConfigError, match="rate_weight: expected float, got 'lots'"):
        load_config(EntropicConfig, None, ["rate_weight=lots"])
