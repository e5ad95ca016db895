"""Registry, split-point tables and the split contract ``tail(head(x)) == model(x)``."""

from __future__ import annotations

import pytest
import torch

from aecnn.errors import UnknownModelError, UnknownSplitPointError, WeightsError
from aecnn.models import (
    ModelSpec,
    create_model,
    get_spec,
    list_models,
    register_model,
    split_model,
)

ALL = [(name, p.name) for name in list_models() for p in get_spec(name).split_points]


def test_registry_lists_required_backbones():
    assert {"resnet18", "resnet34", "resnet50", "resnet101", "efficientnet_lite0"} <= set(
        list_models())


def test_registry_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register_model(get_spec("resnet50"))


def test_unknown_names_give_clear_errors():
    with pytest.raises(UnknownModelError, match="known models"):
        create_model("resnet5000")
    with pytest.raises(UnknownSplitPointError, match="layer1.0"):
        get_spec("resnet50").split_point("layer9.9")


def test_paper_split_points_of_resnet50():
    spec = get_spec("resnet50")
    stem, l2 = spec.split_point("l1"), spec.split_point("l2")
    assert (stem.name, stem.shape(224)) == ("stem", (64, 56, 56))
    assert (l2.name, l2.shape(224)) == ("layer1.0", (256, 56, 56))
    assert spec.split_point("layer4.2").shape(224) == (2048, 7, 7)
    assert len(spec.split_points) == 17


_MODELS: dict[str, torch.nn.Module] = {}


def _model(name: str) -> torch.nn.Module:
    if name not in _MODELS:
        torch.manual_seed(0)
        _MODELS[name] = create_model(name, num_classes=11).eval()
    return _MODELS[name]


@pytest.mark.parametrize(("name", "point"), ALL)
def test_split_contract(name: str, point: str):
    """Every split point: exact shape from the table and a bit-exact recombination (eval)."""
    spec, model = get_spec(name), _model(name)
    x = torch.randn(2, 3, 72, 56, generator=torch.Generator().manual_seed(1))
    head, tail = split_model(model, spec, point)
    with torch.no_grad():
        z = head(x)
        assert tuple(z.shape) == (2, *spec.split_point(point).shape((72, 56)))
        assert torch.equal(tail(z), model(x))


def test_split_halves_share_parameters():
    spec, model = get_spec("resnet18"), _model("resnet18")
    head, tail = split_model(model, spec, "layer2.0")
    ids = {id(p) for p in model.parameters()}
    assert {id(p) for p in [*head.parameters(), *tail.parameters()]} == ids


def test_weights_from_file_and_classifier_replacement(tmp_path):
    torch.manual_seed(0)
    src = create_model("resnet18", num_classes=7)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    same = create_model("resnet18", num_classes=7, weights=str(tmp_path / "w.pt"))
    for (k, a), b in zip(src.state_dict().items(), same.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    other = create_model("resnet18", num_classes=5, weights=str(tmp_path / "w.pt"))
    assert other.fc.out_features == 5
    assert torch.equal(other.conv1.weight, src.conv1.weight)


def test_weights_errors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        create_model("resnet18", weights=str(tmp_path / "nope.pt"))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="corrupt or unreadable"):
        create_model("resnet18", weights=str(tmp_path / "bad.pt"))
    torch.save(create_model("resnet34").state_dict(), tmp_path / "r34.pt")
    with pytest.raises(WeightsError, match="do not match"):
        create_model("resnet18", weights=str(tmp_path / "r34.pt"))


def test_imagenet_weights_unavailable_is_clear(monkeypatch, tmp_path):
    """Offline with an empty hub cache, torchvision weights fail with advice, not a trace."""
    import socket

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(WeightsError, match="--weights PATH"):
        create_model("resnet50", num_classes=101, weights="imagenet")


def test_spec_is_frozen():
    spec: ModelSpec = get_spec("resnet50")
    with pytest.raises(AttributeError):
        spec.name = "x"  # type: ignore[misc]


@pytest.mark.parametrize("name", list_models())
def test_emitters_match_the_architecture(name):
    """A split point lists conv/BN emitters exactly when no identity shortcut adds in."""
    spec, model = get_spec(name), _model(name)
    for p in spec.split_points:
        for conv, bn in p.emitters:
            assert isinstance(model.get_submodule(conv), torch.nn.Conv2d)
            assert model.get_submodule(bn).num_features == p.channels
        if p.name == "stem":
            assert p.emitters
            continue
        block = model.get_submodule(p.name)
        identity = (block.skip if hasattr(block, "skip") else block.downsample is None)
        assert identity == (not p.emitters), p.name
