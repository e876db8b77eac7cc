"""Calibration augmentation (spa.augment): which inputs are images, what a rescaled copy is, and that calibrated
obspa with it still emits a model that passes the zero-group oracle."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import spa
from models.patterns import build
from spa import augment, calib
from spa.api import prepare


@pytest.mark.parametrize("shape, axes", [((2, 3, 16, 20), (2, 3)), ((2, 16, 20, 3), (1, 2)), ((2, 1, 8, 8), (2, 3)),
                                          ((2, 3, 4, 20), None), ((2, 16, 20, 8), None), ((2, 10, 64), None)])
def test_spatial_axes(shape, axes):
    assert augment.spatial_axes(np.zeros(shape, np.float32)) == axes


def test_integer_inputs_are_no_images():
    assert augment.spatial_axes(np.zeros((2, 3, 16, 16), np.int64)) is None


def test_rescaled_shrinks_the_content_towards_the_corner_and_replicates_the_edge():
    x = np.zeros((1, 1, 20, 20), np.float32)
    x[0, 0, :10, :10] = 1.0  # the top-left quarter
    y = augment.rescaled(x, (2, 3), 0.5)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert (y[0, 0, :4, :4] == 1).all() and (y[0, 0, 6:, :] == 0).all() and (y[0, 0, :, 6:] == 0).all()
    ramp = np.arange(20, dtype=np.float32)[None, None, None, :].repeat(20, axis=2)  # along the width
    z = augment.rescaled(ramp, (2, 3), 0.5)
    assert np.allclose(z[..., :10], 2 * ramp[..., :10]) and np.allclose(z[..., 10:], 19)  # the edge beyond
    nhwc = augment.rescaled(np.moveaxis(ramp, 1, 3), (1, 2), 0.5)
    assert np.allclose(np.moveaxis(nhwc, 3, 1), z)
    assert np.array_equal(augment.rescaled(x, (2, 3), 1.0), x)


def test_with_rescaled_copies_repeats_other_inputs_and_needs_an_image():
    img, ids = np.random.default_rng(0).random((3, 3, 16, 16), np.float32), np.arange(6).reshape(3, 2)
    out = augment.with_rescaled_copies({"img": img, "ids": ids}, (0.9, 1.1))
    assert out is not None and out["img"].shape == (9, 3, 16, 16) and out["ids"].shape == (9, 2)
    assert np.array_equal(out["img"][:3], img)
    assert np.array_equal(out["img"][3:6], augment.rescaled(img, (2, 3), 0.9))
    assert np.array_equal(out["img"][6:], augment.rescaled(img, (2, 3), 1.1))
    assert np.array_equal(out["ids"], np.concatenate([ids, ids, ids]))
    assert augment.with_rescaled_copies({"ids": ids}) is None


def test_rescaled_above_one_enlarges_from_the_corner():
    ramp = np.arange(20, dtype=np.float32)[None, None, None, :].repeat(20, axis=2)
    z = augment.rescaled(ramp, (2, 3), 2.0)
    assert np.allclose(z, ramp / 2)  # the left half stretched over the whole width


def test_calibrated_obspa_reports_the_augmentation_and_passes_the_oracle():
    m = build("residual_add_chain")
    view, _ = prepare(m)
    x = calib.noise_inputs(view, 8, seed=1)
    assert augment.with_rescaled_copies(x) is not None, "the test model must take an image"
    _, rep = spa.prune(m, ratio=0.5, criterion="obspa", calib=x, oracle=True)
    assert rep.calibration["augment"] and rep.calibration["samples"] == 8 * (1 + len(augment.SCALES))
    assert rep.oracle is not None and rep.oracle < 1e-4
    _, rep = spa.prune(m, ratio=0.5, criterion="obspa", calib=x, calib_augment=False)
    assert "augment" not in rep.calibration and rep.calibration["samples"] == 8


@pytest.mark.parametrize("copies", [0, 1, None])
def test_refit_copies_give_the_refit_the_real_images_and_that_many_copies(copies, monkeypatch):
    """spa.augment.REFIT_COPIES: the statistics read every copy, the re-fit the real images first and `copies` of
    their copies (None: all), with the original's rows kept for exactly those (it does not run the original again);
    the oracle holds."""
    ob = importlib.import_module("spa.criteria.obspa")
    seen = []
    real_refit = ob.refit

    def refit(a, keep, layers, overrides, feeds, **kw):
        seen.append((len(next(iter(feeds.values()))), kw["original"] is not None))
        return real_refit(a, keep, layers, overrides, feeds, **kw)

    monkeypatch.setattr(ob, "refit", refit)
    monkeypatch.setattr(augment, "REFIT_COPIES", copies)
    m = build("residual_add_chain")
    x = calib.noise_inputs(prepare(m)[0], 8, seed=1)
    _, rep = spa.prune(m, ratio=0.5, criterion="obspa", calib=x, oracle=True)
    n_copies = len(augment.SCALES) if copies is None else copies
    assert seen == [(8 * (1 + n_copies), True)]
    assert rep.calibration["samples"] == 8 * (1 + len(augment.SCALES))
    assert rep.oracle is not None and rep.oracle < 1e-4
