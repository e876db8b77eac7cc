"""Models whose weights live in external data too large to hold twice: read lazily, write straight to disk.

A model whose external data exceeds `stream_threshold()` bytes (2 GiB by default; `SPA_STREAM_BYTES` or the
`stream_bytes` argument of `spa.prune` change it) is loaded *without* its external data: small external
tensors (shape constants: up to `INLINE_MAX` bytes) are read into the proto, the large ones stay as
references and are read one at a time through `np.memmap` (`read_array`), never cached. The rewriter hands
every sliced weight to a `Staging` area beside the output, which appends it to the output's external data
file at once; weights the plan does not touch are copied there in chunks. The staged model is verified from
its file (onnx.checker, onnxruntime) and only then renamed into place. At no point are two copies of the
weights in memory: peak memory is about one weight tensor plus what onnxruntime maps to run the result.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper, numpy_helper

from .errors import BadModel, WriteFailed

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
    env = os.environ.get(STREAM_ENV, "").strip()
    if env:
        try:
            return int(env)
        except ValueError:
            raise BadModel(f"{STREAM_ENV}={env!r} is not a number of bytes") from None
    return DEFAULT_THRESHOLD


def is_external(t: onnx.TensorProto) -> bool:
    return t.data_location == onnx.TensorProto.EXTERNAL


def _info(t: onnx.TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in t.external_data}


def _numel(t: onnx.TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= int(d)
    return n


def external_length(t: onnx.TensorProto) -> int:
    info = _info(t)
    if "length" in info:
        return int(info["length"])
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
    offset = int(info.get("offset", 0) or 0)
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
    """A private directory beside the output where the pruned model and its external data are assembled,
    verified from disk, then renamed into place (data first, model last)."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        d = self.out.parent if str(self.out.parent) else Path(".")
        try:
            self.dir = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".spa-staging", dir=d))
            self.data_name = self.out.name + ".data"
            self._f = open(self.dir / self.data_name, "wb")  # noqa: SIM115 - closed in finish()/abort()
        except OSError as e:
            raise WriteFailed(f"cannot write beside {self.out}: {e.strerror or e}") from None
        self._off = 0
        self.written: set[str] = set()
        self.model_path = self.dir / self.out.name

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
        off = self._begin()
        self._write_array(arr)
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
        info = _info(t)
        length = external_length(t)
        with _open(t, base_dir) as f:
            f.seek(int(info.get("offset", 0) or 0))
            off = self._begin()
            left = length
            while left > 0:
                b = f.read(min(_CHUNK, left))
                if not b:
                    raise BadModel(f"external data of '{t.name}' is truncated")
                self._f.write(b)
                left -= len(b)
        self._off += length
        self._ref(t, off, length)

    def finish(self, model: onnx.ModelProto, base_dir: str) -> Path:
        """Move every remaining external reference of `model` (untouched input weights) into the staged data
        file, then write the model file. Returns the staged model path."""
        for t in model.graph.initializer:
            if is_external(t) and t.name not in self.written:
                self.copy(t, base_dir)
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            with open(self.model_path, "wb") as f:
                f.write(model.SerializeToString())
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise WriteFailed(f"cannot write {self.out}: {e.strerror or e}") from None
        return self.model_path

    def commit(self) -> int:
        """Rename the verified files into place; returns bytes written (model plus data)."""
        from .graph import default_mode

        d = self.out.parent if str(self.out.parent) else Path(".")
        data = self.dir / self.data_name
        try:
            for p in (data, self.model_path):
                os.chmod(p, default_mode())
            size = data.stat().st_size + self.model_path.stat().st_size
            os.replace(data, d / self.data_name)
            os.replace(self.model_path, self.out)
        except OSError as e:
            raise WriteFailed(f"cannot write {self.out}: {e.strerror or e}") from None
        finally:
            self.abort()
        return size

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        shutil.rmtree(self.dir, ignore_errors=True)
