"""Full-size zoo models (224×224, ImageNet widths): slow, run by `make test-all`."""

from __future__ import annotations

import pytest

import spa
from models import zoo_torch

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v3", "densenet", "shufflenet_v2", "efficientnet", "resnext"])
def test_full_size_prunes_with_oracle(name, tmp_path):
    p = zoo_torch.export(name, tmp_path / f"{name}.onnx", size="full")
    _, rep = spa.prune(str(p), ratio=0.5, oracle=True)
    assert rep.oracle <= 1e-5
    assert rep.after.macs < 0.5 * rep.before.macs
