"""Atomic writes: a failure or an interrupt mid-write leaves the previous output intact and no debris."""

from __future__ import annotations

import errno
from pathlib import Path

import onnx
import pytest

from spa import modelfile
from spa.errors import BadArgument, WriteFailed

SAMPLE = Path(__file__).resolve().parents[1] / "models" / "samples" / "simple_cnn.onnx"


def _debris(d: Path) -> list[Path]:
    return [p for p in d.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_keeps_previous_output(tmp_path, monkeypatch, exc):
    out = tmp_path / "o.onnx"
    out.write_bytes(b"previous output")
    m = onnx.load(SAMPLE)

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(modelfile.os, "fsync", boom)
    expected = WriteFailed if isinstance(exc, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as ei:
        modelfile.save_atomic(m, out)
    if isinstance(exc, OSError):
        assert "No space left" in str(ei.value)
    assert out.read_bytes() == b"previous output"
    assert _debris(tmp_path) == []


def test_save_refuses_the_input(tmp_path):
    p = tmp_path / "m.onnx"
    p.write_bytes(SAMPLE.read_bytes())
    with pytest.raises(BadArgument):
        modelfile.save_atomic(onnx.load(p), p, input_path=str(p))
    link = tmp_path / "link.onnx"
    link.symlink_to(p)
    with pytest.raises(BadArgument):
        modelfile.save_atomic(onnx.load(p), link, input_path=str(p))
    assert p.read_bytes() == SAMPLE.read_bytes()


def test_save_writes_valid_model(tmp_path):
    out = tmp_path / "o.onnx"
    n = modelfile.save_atomic(onnx.load(SAMPLE), out)
    assert n == out.stat().st_size
    onnx.checker.check_model(onnx.load(out), full_check=True)
    assert _debris(tmp_path) == []


def test_unwritable_directory(tmp_path, monkeypatch):
    """As root, permissions can't make a directory unwritable, so os.access is made to say so."""
    real = modelfile.os.access
    monkeypatch.setattr(modelfile.os, "access", lambda p, mode: False if Path(p) == tmp_path else real(p, mode))
    with pytest.raises(WriteFailed, match="not writable"):
        modelfile.save_atomic(onnx.load(SAMPLE), tmp_path / "o.onnx")
    assert list(tmp_path.iterdir()) == []
