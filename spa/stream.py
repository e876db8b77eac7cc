"""Models whose weights live in external data too large to hold twice: read lazily, write straight to disk.

A model whose external data exceeds `stream_threshold()` bytes (2 GiB by default; `SPA_STREAM_BYTES` or the
`stream_bytes` argument of `spa.prune` change it) is loaded *without* its external data: small external
tensors (shape constants: up to `INLINE_MAX` bytes) are read into the proto, the large ones stay as
references and are read one at a time through `np.memmap` (`read_array`), never cached. The rewriter hands
every sliced weight to a `Staging` area beside the output, which appends it to the output's external data
file at once; weights the plan does not touch are copied there in chunks. The staged model is verified from
its file (onnx.checker, onnxruntime) and only then moved into place, the model's rename last (see `Staging`). At no point are two copies of the
weights in memory: peak memory is about one weight tensor plus what onnxruntime maps to run the result.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper, numpy_helper

from . import io_safety
from .errors import BadModel, WriteFailed, printable

STREAM_ENV = "SPA_STREAM_BYTES"
DEFAULT_THRESHOLD = 2**31 - 1
INLINE_MAX = 1024  # external tensors up to this size are read into the proto (shape constants)
EXTERNAL_MIN = 1024  # written weights of at least this size go to the external data file (onnx's default)
_ALIGN = 4096  # page-aligned offsets let onnxruntime map the weights instead of copying them
_CHUNK = 64 * 2**20


def stream_threshold(value: int | None = None) -> int:
    """External-data size above which a model is streamed: `value`, else $SPA_STREAM_BYTES, else 2 GiB."""
    if value is not None:
        return int(value)
    from .settings import env_int

    return env_int(STREAM_ENV, DEFAULT_THRESHOLD, "bytes")


def is_external(t: onnx.TensorProto) -> bool:
    return t.data_location == onnx.TensorProto.EXTERNAL


def _info(t: onnx.TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in t.external_data}


def _numel(t: onnx.TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= int(d)
    return n


def _count(t: onnx.TensorProto, key: str) -> int | None:
    """A non-negative integer field of the tensor's external-data entry (offset, length), or None if absent;
    anything else is a malformed model (exit 3), not an internal error."""
    v = _info(t).get(key)
    if v is None or v == "":
        return None
    try:
        n = int(v)
    except ValueError:
        n = -1
    if n < 0:
        raise BadModel(f"external data of '{printable(t.name)}': {key} {printable(v)!r} is not a byte count")
    return n


def check_external_entries(model: onnx.ModelProto, where: str = "model") -> None:
    """Refuse malformed external-data entries before any file is opened: a location with a NUL byte (C code
    would read another file than the one named), a negative or non-numeric offset or length."""
    for t in io_safety.all_tensors(model.graph):
        if is_external(t):
            if "\0" in _info(t).get("location", ""):
                raise BadModel(f"{where}: external data location of '{printable(t.name, 120)}' contains a NUL byte")
            _count(t, "offset")
            _count(t, "length")


def external_offset(t: onnx.TensorProto) -> int:
    return _count(t, "offset") or 0


def external_length(t: onnx.TensorProto) -> int:
    n = _count(t, "length")
    if n is not None:
        return n
    try:
        return _numel(t) * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    except Exception:  # noqa: BLE001 - exotic type: size unknown, count it as large
        return 2**62


def external_bytes(model: onnx.ModelProto) -> int:
    """Bytes of initializer data stored outside the proto."""
    return sum(external_length(t) for t in model.graph.initializer if is_external(t))


def inline_small(model: onnx.ModelProto, base_dir: str, max_bytes: int = INLINE_MAX) -> None:
    """Read the small external tensors into the proto (rules and shape folding read those directly)."""
    for t in model.graph.initializer:
        if is_external(t) and external_length(t) <= max_bytes:
            external_data_helper.load_external_data_for_tensor(t, base_dir)


def _open(t: onnx.TensorProto, base_dir: str):
    """The tensor's data file, opened through onnx's own checks (no path outside the model's directory)."""
    loc = _info(t).get("location", "")
    if "\0" in loc:
        raise BadModel(f"external data location of '{printable(t.name)}' contains a NUL byte")
    try:
        fd = external_data_helper._open_external_data_fd(base_dir, loc, t.name, True)
    except Exception as e:  # noqa: BLE001 - missing file, unsafe location
        raise BadModel(f"external data of '{t.name}' ({loc}) missing or unreadable: {str(e).splitlines()[0][:200]}") \
            from None
    return os.fdopen(fd, "rb")


def read_array(t: onnx.TensorProto, base_dir: str) -> np.ndarray:
    """The value of an external tensor as a read-only array backed by the file (np.memmap): pages are read on
    first touch and released with the array."""
    info = _info(t)
    offset = external_offset(t)
    n = _numel(t)
    shape = tuple(int(d) for d in t.dims)
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type))
    except Exception:  # noqa: BLE001
        dtype = None
    plain = dtype is not None and dtype.kind in "fiub" and t.data_type not in (
        onnx.TensorProto.BFLOAT16, onnx.TensorProto.INT4, onnx.TensorProto.UINT4,
    ) and t.data_type < onnx.TensorProto.FLOAT8E4M3FN
    with _open(t, base_dir) as f:
        size = os.fstat(f.fileno()).st_size
        if not plain:  # bfloat16, float8, int4, strings: let onnx decode a copy
            c = onnx.TensorProto()
            c.CopyFrom(t)
            c.raw_data = external_data_helper._validate_external_data_file_bounds(f, external_data_helper.ExternalDataInfo(t), t.name)
            c.data_location = onnx.TensorProto.DEFAULT
            del c.external_data[:]
            return numpy_helper.to_array(c)
        nbytes = n * dtype.itemsize
        if "length" in info and int(info["length"]) != nbytes:
            raise BadModel(f"external data of '{t.name}': length {info['length']} != {nbytes} for its shape")
        if offset + nbytes > size:
            raise BadModel(f"external data of '{t.name}' is truncated ({size} bytes, needs {offset + nbytes})")
        if n == 0:
            return np.zeros(shape, dtype)
        return np.memmap(f, dtype=dtype.newbyteorder("<"), mode="r", offset=offset, shape=shape)


class Staging:
    """A private directory beside the output where the pruned model and its external data are assembled and
    verified from disk before anything visible changes.

    The data file has a name no file has yet (`spa.io_safety.data_file_name`: `<out>.<random>.data`), so
    moving it beside the output replaces nothing; the model's rename onto the output is then the only commit
    point. A crash before it leaves the previous output (model and data) whole; after it the new pair is
    whole. Two concurrent runs each commit a consistent pair. The previous output's data file is removed
    afterwards only if spa wrote it (its name has that pattern), nothing read in this run is that file, and
    the output no longer refers to it. The directory is removed on every error path (`abort`); one left by
    a killed process is removed by a later run (`spa.io_safety.remove_stale`)."""

    def __init__(self, out: str | os.PathLike[str], keep: Iterable[str | os.PathLike[str]] = ()) -> None:
        self.out = Path(out)
        self.keep = [Path(k) for k in keep]  # files this run reads: never removed
        d = io_safety.directory_of(self.out)
        io_safety.remove_stale(d)
        self.dir = d / io_safety.debris_name(self.out, "staging")
        self.data_name = io_safety.data_file_name(self.out)
        try:
            self.dir.mkdir()
        except OSError as e:
            raise WriteFailed(f"cannot write beside {self.out}: {e.strerror or e}") from None
        try:
            self._f = open(self.dir / self.data_name, "xb")  # noqa: SIM115 - closed in finish()/abort()
        except OSError as e:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise WriteFailed(f"cannot write beside {self.out}: {e.strerror or e}") from None
        self._off = 0
        self.written: set[str] = set()
        self.model_path = self.dir / "model.onnx"

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()

    def _begin(self) -> int:
        pad = -self._off % _ALIGN
        if pad:
            self._f.write(b"\0" * pad)
            self._off += pad
        return self._off

    def _ref(self, t: onnx.TensorProto, offset: int, length: int) -> None:
        del t.external_data[:]
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        for k, v in (("location", self.data_name), ("offset", str(offset)), ("length", str(length))):
            e = t.external_data.add()
            e.key, e.value = k, v
        self.written.add(t.name)

    def put(self, name: str, arr: np.ndarray) -> onnx.TensorProto:
        """A tensor for `arr`: large ones appended to the data file now, small ones inline."""
        arr = np.asarray(arr)
        if arr.nbytes < EXTERNAL_MIN or arr.dtype.kind not in "fiub" or arr.dtype.byteorder == ">":
            return numpy_helper.from_array(np.ascontiguousarray(arr), name)
        t = onnx.TensorProto()
        t.name = name
        t.data_type = onnx.helper.np_dtype_to_tensor_dtype(arr.dtype)
        t.dims.extend(arr.shape)
        try:
            off = self._begin()
            self._write_array(arr)
        except OSError as e:  # a full disk while streaming: exit 5, the staging directory is removed
            raise WriteFailed(f"cannot write {self.out}: {e.strerror or e}") from None
        self._ref(t, off, arr.nbytes)
        return t

    def _write_array(self, arr: np.ndarray) -> None:
        flat = arr.reshape(-1) if arr.flags.c_contiguous else None
        if flat is not None:
            step = max(1, _CHUNK // max(1, arr.itemsize))
            for i in range(0, flat.size, step):
                self._f.write(memoryview(np.ascontiguousarray(flat[i:i + step])).cast("B"))
        else:  # a non-contiguous slice: write it row block by row block
            rows = max(1, _CHUNK // max(1, arr[0].nbytes)) if arr.ndim and arr.shape[0] else 1
            for i in range(0, arr.shape[0], rows):
                self._f.write(memoryview(np.ascontiguousarray(arr[i:i + rows])).cast("B"))
        self._off += arr.nbytes

    def copy(self, t: onnx.TensorProto, base_dir: str) -> None:
        """Copy an untouched external tensor from the input's data file into the output's, in chunks."""
        length = external_length(t)
        with _open(t, base_dir) as f:
            f.seek(external_offset(t))
            off = self._begin()
            left = length
            while left > 0:
                b = f.read(min(_CHUNK, left))
                if not b:
                    raise BadModel(f"external data of '{t.name}' is truncated")
                try:
                    self._f.write(b)
                except OSError as e:
                    raise WriteFailed(f"cannot write {self.out}: {e.strerror or e}") from None
                left -= len(b)
        self._off += length
        self._ref(t, off, length)

    def put_inline(self, model: onnx.ModelProto) -> None:
        """Move the large in-memory initializers of `model` into the data file (a model over protobuf's 2 GB
        limit is written this way)."""
        for t in model.graph.initializer:
            if is_external(t) or t.data_type == onnx.TensorProto.STRING:
                continue
            if t.HasField("raw_data") and len(t.raw_data) >= EXTERNAL_MIN:
                off = self._begin()
                try:
                    self._f.write(t.raw_data)
                except OSError as e:
                    raise WriteFailed(f"cannot write {self.out}: {e.strerror or e}") from None
                self._off += len(t.raw_data)
                self._ref(t, off, self._off - off)
            elif not t.HasField("raw_data") and t.ByteSize() >= EXTERNAL_MIN:
                t.CopyFrom(self.put(t.name, numpy_helper.to_array(t)))

    def finish(self, model: onnx.ModelProto, base_dir: str | None) -> Path:
        """Move every remaining external reference of `model` (untouched input weights) into the staged data
        file, then write the model file. Returns the staged model path."""
        try:
            for t in model.graph.initializer:
                if is_external(t) and t.name not in self.written:
                    if base_dir is None:
                        raise WriteFailed(f"cannot write {self.out}: the model refers to external data in an "
                                          "unknown directory")
                    self.copy(t, base_dir)
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            with open(self.model_path, "xb") as f:
                f.write(model.SerializeToString())
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise WriteFailed(f"cannot write {self.out}: {e.strerror or e}") from None
        return self.model_path

    def commit(self) -> int:
        """Move the verified files into place: the data file under its fresh name, then the model onto the
        output (the commit point); then drop the previous output's data file if it was spa's. Returns bytes
        written (model plus data)."""
        d = io_safety.directory_of(self.out)
        data, final_data = self.dir / self.data_name, d / self.data_name
        old = io_safety.model_files(self.out)[1:] if self.out.is_file() else []
        moved = False
        try:
            for p in (data, self.model_path):
                os.chmod(p, io_safety.default_mode())
            size = data.stat().st_size + self.model_path.stat().st_size
            if os.path.lexists(final_data):  # cannot happen with 64 random bits; never replace a file
                raise WriteFailed(f"cannot write {self.out}: {final_data} exists")
            os.replace(data, final_data)
            moved = True
            io_safety.publish(self.model_path, self.out)
            moved = False
        except OSError as e:
            raise WriteFailed(f"cannot write {self.out}: {e.strerror or e}") from None
        finally:
            if moved:  # the model was not committed: its data file is nobody's
                final_data.unlink(missing_ok=True)
            self.abort()
        self._drop_old(old, final_data)
        return size

    def _drop_old(self, old: list[Path], new: Path) -> None:
        if not old:
            return
        still = set(io_safety.model_files(self.out)[1:]) if self.out.is_file() else set()
        for f in old:
            if (io_safety.is_own_data_file(self.out, f.name) and f.parent.resolve() == new.parent.resolve()
                    and f not in still and not io_safety.same_file(f, new)
                    and not any(io_safety.same_file(f, k) for k in self.keep)):
                f.unlink(missing_ok=True)

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        shutil.rmtree(self.dir, ignore_errors=True)
