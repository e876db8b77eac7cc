"""`spa finetune --teacher --augment`: label-free augmentations of the training batches (spa.augment.Augment;
the calibration copy is tested in test_augment.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from test_distill import _prune
from test_finetune import assert_one_line_error, spa_cli

from models import patterns
from spa.augment import KINDS, Augment, parse_augment
from spa.distill import Distillation
from spa.errors import BadArgument
from spa.finetune import finetune
from spa.onnx_to_torch import onnx_to_torch


def _image_model(shape: list) -> onnx.ModelProto:
    m = patterns.build("two_gemms")  # x (N, 3, 8, 8)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, shape):
        d.Clear()
        if isinstance(v, str):
            d.dim_param = v
        else:
            d.dim_value = v
    return m


def test_parse_augment():
    assert parse_augment(None) == () and parse_augment("none") == ()
    assert parse_augment("all") == KINDS
    assert parse_augment("blur, noise,blur") == ("blur", "noise")
    with pytest.raises(BadArgument, match="unknown 'blurr'"):
        parse_augment("blurr,noise")


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_keeps_shape_and_dtype_and_changes_the_image(kind):
    rng = np.random.default_rng(0)
    x = torch.from_numpy(np.where(rng.random((16, 3, 8, 12)) < 0.3, -1.0, 1.0).astype(np.float32))
    y = Augment((kind,), _image_model(["N", 3, 8, 12]), seed=0)([x])[0]
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    changed = (y - x).abs().flatten(1).amax(1) > 1e-6
    assert 0 < int(changed.sum()) < 16  # per sample, with probability 1/2
    again = Augment((kind,), _image_model(["N", 3, 8, 12]), seed=0)([x])[0]
    assert torch.equal(y, again)  # seeded


def test_colour_tints_each_channel_apart():
    """Black text on white: `colour` gives the background and the text other values per channel (a tint), where
    `contrast` moves the three channels together; a grey image (one channel) is only contrast-changed."""
    x = torch.ones(64, 3, 8, 12)
    x[:, :, 3:5, 2:10] = -1.0  # a dark stroke on a light page, the same in every channel
    y = Augment(("colour",), _image_model(["N", 3, 8, 12]), seed=0)([x])[0]
    on = (y - x).abs().flatten(1).amax(1) > 1e-6
    bg, fg = y[:, :, 0, 0], y[:, :, 4, 5]  # (N, 3)
    assert (bg[on].std(1) > 1e-3).all() and (fg[on].std(1) > 1e-3).all()  # tinted: channels differ
    assert (bg - fg > 0).all()  # still light on dark in every channel (gain >= 0.6)
    same = Augment(("contrast",), _image_model(["N", 3, 8, 12]), seed=0)([x])[0]
    assert float(same[:, :, 0, 0].std(1).amax()) < 1e-6
    grey = Augment(("colour",), _image_model(["N", 1, 8, 12]), seed=0)([x[:, :1]])[0]
    assert grey.shape == (64, 1, 8, 12) and torch.isfinite(grey).all()


def test_nhwc_is_augmented_like_nchw():
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((4, 3, 8, 12)).astype(np.float32))
    a = Augment(KINDS, _image_model(["N", 3, 8, 12]), seed=3)([x])[0]
    b = Augment(KINDS, _image_model(["N", 8, 12, 3]), seed=3)([x.permute(0, 2, 3, 1)])[0]
    assert b.shape == (4, 8, 12, 3)
    torch.testing.assert_close(b.permute(0, 3, 1, 2), a)


def test_teacher_sees_the_augmented_inputs():
    """The student equal to the teacher has zero loss on altered inputs only if the teacher saw them too."""
    m = patterns.build("two_gemms")
    x = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    obj = Distillation(m, m, {"x": x}, 8, 2.0, {})
    module = onnx_to_torch(m)
    module.eval()
    xs = Augment(("invert", "shift"), m, seed=0)([torch.from_numpy(x)])
    assert float(obj.torch_loss_on(module, xs).detach()) < 1e-8
    assert float(obj.torch_loss(module, xs, np.arange(8)).detach()) > 1e-3  # the cached (clean) teacher values differ


def test_off_by_default_and_trains_when_on(tmp_path):
    teacher, student, data = _prune(patterns.build("multi_output"), tmp_path, "multi")
    plain = finetune(student, data, tmp_path / "p.onnx", teacher=teacher, epochs=1, batch=16)
    assert plain.augment == () and plain.as_dict()["augment"] == []
    rep = finetune(student, data, tmp_path / "a.onnx", teacher=teacher, epochs=15, lr=1e-2, batch=16, augment="all")
    assert rep.augment == KINDS and rep.loss_after < rep.loss_before and rep.export_error <= 1e-4


def test_bad_augment_options_are_one_line_errors(tmp_path):
    teacher, student, data = _prune(patterns.build("multi_output"), tmp_path, "multi", n=16)
    o = tmp_path / "o.onnx"
    assert_one_line_error(spa_cli("finetune", student, "--teacher", teacher, "--data", data, "-o", o, "--augment",
                                  "rotate"), 2, "--augment 'rotate': unknown")
    seq = tmp_path / "seq.onnx"
    onnx.save(patterns.build("conv1d_bn"), str(seq))  # x is (N, 3, 8): not an image
    np.savez(tmp_path / "seq.npz", x=np.zeros((16, 3, 8), np.float32))
    assert_one_line_error(spa_cli("finetune", seq, "--teacher", seq, "--data", tmp_path / "seq.npz", "-o", o,
                                  "--augment", "all"), 2, "float image inputs")
    np.savez(tmp_path / "lab.npz", x=np.load(data)["x"], y=np.zeros((16, 4, 8, 8), np.float32))
    assert_one_line_error(spa_cli("finetune", student, "--data", tmp_path / "lab.npz", "-o", o, "--loss", "mse",
                                  "--augment", "blur"), 2, "--augment applies to distillation")
    assert not o.exists()


def test_channel_axis_must_be_findable():
    with pytest.raises(BadArgument, match="cannot tell the channel axis"):
        Augment(("blur",), _image_model(["N", 8, 8, 8]), seed=0)


def test_splice_takes_the_columns_from_a_cut_on_from_another_sample():
    """`splice`: a changed sample keeps its own columns left of a cut at 25-75 % of the width and has another
    sample's from the cut on, in every row and channel; NHWC inputs are cut along their width too."""
    n, w = 32, 40
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 8, w).contiguous()  # sample i is all i
    y = Augment(("splice",), _image_model(["N", 3, 8, w]), seed=3)([x])[0]
    changed = 0
    for i in range(n):
        row = y[i, 0, 0]
        assert torch.equal(y[i], row.expand(3, 8, w))  # the same columns in every row and channel
        if torch.equal(row, x[i, 0, 0]):
            continue
        cut = int((row != i).nonzero()[0])
        assert 0.25 * w <= cut <= 0.75 * w + 1
        assert len(set(row[cut:].tolist())) == 1  # one other sample from the cut on (its own before, by `cut`)
        changed += 1
    assert 0 < changed < n
    xh = x.permute(0, 2, 3, 1).contiguous()  # NHWC: the same samples, cut along axis 2
    yh = Augment(("splice",), _image_model(["N", 8, w, 3]), seed=3)([xh])[0]
    assert torch.equal(yh.permute(0, 3, 1, 2), y)


def test_mix_blends_each_sample_with_another_of_its_batch():
    """`mix`: a changed sample is λ x_i + (1 − λ) x_j with λ in [0.5, 1] and j another sample of the batch; a batch of
    one is left as it is."""
    n = 32
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 8, 12).contiguous()  # sample i is all i
    y = Augment(("mix",), _image_model(["N", 3, 8, 12]), seed=1)([x])[0]
    assert torch.equal(y.amin((1, 2, 3)), y.amax((1, 2, 3)))  # each sample is still one value: a blend of two flat ones
    changed = (y[:, 0, 0, 0] - torch.arange(n)).abs() > 1e-6
    assert 0 < int(changed.sum()) < n
    # half the samples dark (0), half light (1): a blend stays on its own side of 0.5, and some are blends of both
    x = (torch.arange(n) >= n // 2).float().view(n, 1, 1, 1).expand(n, 3, 8, 12).contiguous()
    v = Augment(("mix",), _image_model(["N", 3, 8, 12]), seed=2)([x])[0][:, 0, 0, 0]
    dark = x[:, 0, 0, 0] == 0
    assert (v[dark] <= 0.5).all() and (v[~dark] >= 0.5).all()
    assert ((v > 1e-6) & (v < 1 - 1e-6)).any()
    one = torch.full((1, 3, 8, 12), 5.0)
    assert torch.equal(Augment(("mix",), _image_model(["N", 3, 8, 12]), seed=0)([one])[0], one)
