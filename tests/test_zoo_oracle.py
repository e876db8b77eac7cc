"""The main test: every zoo model prunes at ratio 0.5 to a valid, runnable, smaller model, and the zero-group
oracle holds (pruned outputs == original outputs with the removed channels zeroed, 1e-5 relative)."""

from __future__ import annotations

import onnx
import pytest

import spa
from models import zoo_keras, zoo_torch

TOL = 1e-5


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("zoo")


def _torch_model(name: str, zoo_dir, dynamo: bool = False) -> str:
    p = zoo_dir / f"{name}{'_dynamo' if dynamo else ''}.onnx"
    if not p.exists():
        zoo_torch.export(name, p, size="tiny", dynamo=dynamo)
    return str(p)


def _assert_pruned_ok(path: str, criterion: str = "l1", global_: bool = False) -> spa.api.PruneReport:
    pruned, rep = spa.prune(path, ratio=0.5, criterion=criterion, global_=global_, oracle=True)
    assert rep.groups_pruned > 0, "nothing was prunable"
    assert rep.after.params < rep.before.params
    assert rep.after.macs < rep.before.macs
    assert rep.oracle is not None and rep.oracle <= TOL, f"oracle error {rep.oracle}"
    orig = onnx.load(path)
    assert [o.name for o in pruned.graph.output] == [o.name for o in orig.graph.output]
    assert [i.name for i in pruned.graph.input if i.name not in {t.name for t in pruned.graph.initializer}] == [
        i.name for i in orig.graph.input if i.name not in {t.name for t in orig.graph.initializer}
    ]
    return rep


@pytest.mark.parametrize("name", sorted(zoo_torch.ZOO))
def test_torch_zoo_l1_local(name, zoo_dir):
    _assert_pruned_ok(_torch_model(name, zoo_dir))


@pytest.mark.parametrize("name", sorted(zoo_torch.ZOO))
def test_torch_zoo_random_plans(name, zoo_dir):
    res = spa.check(_torch_model(name, zoo_dir), trials=2)
    assert res.ok, res.failures


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3", "densenet", "unet"])
def test_torch_zoo_global_bn(name, zoo_dir):
    _assert_pruned_ok(_torch_model(name, zoo_dir), criterion="bn", global_=True)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "googlenet"])
def test_torch_zoo_dynamo_export(name, zoo_dir):
    _assert_pruned_ok(_torch_model(name, zoo_dir, dynamo=True))


@pytest.mark.keras
@pytest.mark.parametrize("name", sorted(zoo_keras.KERAS_ZOO))
def test_keras_zoo(name, zoo_dir):
    p = zoo_dir / f"{name}.onnx"
    if not p.exists():
        zoo_keras.export(name, p, size="tiny")
    _assert_pruned_ok(str(p))
    assert spa.check(str(p), trials=2).ok
