"""Every path spa reads or writes, checked before any work starts, and the one atomic writer.

A command names what it will read (the model, whose external data files are found from the model itself,
`--plan`, `--calib`, `--data`, ...) and what it will write (`-o`, `--out-dir` entries, `--save-plan`,
`--html`, ...) and calls `check_io` once, before loading or writing anything. It refuses, with one line:

- a written path that is a read one (symlinks resolved, hard links compared by device and inode): exit 2;
- two written paths that are the same file: exit 2;
- a destination whose directory is missing or not writable, or that exists and is not a regular file
  (a device, a FIFO, a socket, a symbolic link: spa would replace it, not write into it): exit 5.

Adding an option that reads or writes a file is one more `(label, path)` pair in the caller's lists.

`atomic_write` is the only way spa writes a single file: a temporary file in the destination's directory
(short name, so a 255-byte output name still fits), fsync, then `os.replace`, so the destination holds the old
content or the new one, never a mixture. Temporary files and staging directories carry the writer's pid in
their name; `remove_stale` deletes those of dead processes (after a SIGKILL) on the next write to that directory.
`PendingWrite` is the same write in two steps (written in a background thread, renamed on `commit()`), for a
model that is verified while it is written.

`prefetch` / `take_prefetched` read the input model in a background thread while the command still imports
its libraries; the loader uses those bytes only if the file is unchanged.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from .errors import BadArgument, BadModel, WriteFailed

PathLike = str | os.PathLike[str]
Named = tuple[str, PathLike | None]

MAX_MODEL_FILE = 2**31  # protobuf cannot hold a larger message: weights past 2 GB live in external data
STALE_SECONDS = 60.0  # debris of a dead writer younger than this is left alone (it may be a pid reuse race)
_DEBRIS = re.compile(r"^\..*\.(\d+)\.[0-9a-f]{8}\.spa-(tmp|staging)$")


# ----------------------------------------------------------------------------------------------- paths
def same_file(a: PathLike, b: PathLike) -> bool:
    """True if `a` and `b` name one file: equal after resolving symlinks, or the same inode (hard links)."""
    try:
        if os.path.realpath(a) == os.path.realpath(b):
            return True
        sa, sb = os.stat(a), os.stat(b)
    except (OSError, ValueError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def directory_of(path: PathLike) -> Path:
    p = Path(path)
    return p.parent if str(p.parent) else Path(".")


def check_model_size(path: PathLike) -> int:
    """The model file's size, refusing one larger than protobuf can hold before any byte of it is read."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return 0
    if size > MAX_MODEL_FILE:
        raise BadModel(f"{path}: {size / 2**30:.1f} GiB is larger than an ONNX model file can be (2 GiB; "
                       "larger weights live in external data files)")
    return size


def _may_have_external_data(real: str) -> bool:
    """False when the file cannot refer to external data: every external reference carries the key "location"
    as plain bytes (StringStringEntryProto), so a file without those bytes outside its weights has none. The
    scan skips the raw weights of the graph's initializers (`_raw_data_spans`), which hold numbers, not
    references: on ResNet-50 it reads 0.1 MB of the 100 MB instead of parsing them, and `spa prune` parses the
    file once anyway to prune it (a false positive only costs that parse)."""
    import mmap

    try:
        with open(real, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            start = 0
            for lo, hi in [*_raw_data_spans(mm), (len(mm), len(mm))]:
                if mm.find(b"location", start, lo) >= 0:
                    return True
                start = hi
            return False
    except (OSError, ValueError, IndexError):  # empty, unmappable or not protobuf: the parse below decides
        return True


def _varint(buf, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf, lo: int, hi: int):
    """(field number, payload start, payload end) of the length-delimited fields of one protobuf message in
    buf[lo:hi]; other wire types are stepped over. Raises ValueError on anything malformed."""
    i = lo
    while i < hi:
        key, i = _varint(buf, i)
        kind = key & 7
        if kind == 0:
            _, i = _varint(buf, i)
        elif kind == 1:
            i += 8
        elif kind == 5:
            i += 4
        elif kind == 2:
            n, i = _varint(buf, i)
            if i + n > hi:
                raise ValueError("field past the end of its message")
            yield key >> 3, i, i + n
            i += n
        else:
            raise ValueError(f"wire type {kind}")
    if i != hi:
        raise ValueError("message past its end")


MODEL_GRAPH, GRAPH_INITIALIZER, TENSOR_RAW_DATA = 7, 5, 9  # field numbers in onnx.proto


def _initializer_raw_spans(buf) -> list[list[tuple[int, int]]]:
    """Per initializer of the main graph, in file order, the byte ranges of its raw_data fields (walking only
    the message headers: ModelProto.graph -> GraphProto.initializer -> TensorProto.raw_data)."""
    out = []
    for field_, glo, ghi in _fields(buf, 0, len(buf)):
        if field_ != MODEL_GRAPH:
            continue
        for gfield, tlo, thi in _fields(buf, glo, ghi):
            if gfield == GRAPH_INITIALIZER:
                out.append([(lo, hi) for tfield, lo, hi in _fields(buf, tlo, thi) if tfield == TENSOR_RAW_DATA])
    return out


def _raw_data_spans(buf) -> list[tuple[int, int]]:
    return [span for spans in _initializer_raw_spans(buf) for span in spans]


def raw_data_lengths(buf: bytes) -> list[int | None] | None:
    """Per initializer of the main graph of a serialised model, in order, the length of its raw_data (None:
    it has none), read from the message headers: what `len(t.raw_data)` says after parsing, without copying
    the weights out of the parsed proto. None if `buf` cannot be walked."""
    try:
        return [spans[-1][1] - spans[-1][0] if spans else None for spans in _initializer_raw_spans(buf)]
    except (ValueError, IndexError):
        return None


@functools.lru_cache(maxsize=32)
def _external_files(real: str, _mtime_ns: int, _size: int) -> tuple[str, ...]:
    import onnx

    if not _may_have_external_data(real):
        return ()
    try:
        m = onnx.load(real, load_external_data=False)
    except Exception:  # noqa: BLE001 - not a model: the real load says why, with one line
        return ()
    base = os.path.dirname(real)
    locs: set[str] = set()
    for t in all_tensors(m.graph):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            loc = next((e.value for e in t.external_data if e.key == "location"), "")
            if loc and "\0" not in loc:
                locs.add(os.path.join(base, loc))
    return tuple(sorted(locs))


def all_tensors(g):
    """Initializers and attribute tensors of a graph and its subgraphs (where external data may point)."""
    yield from g.initializer
    for n in g.node:
        for a in n.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("g"):
                yield from all_tensors(a.g)
            for sg in a.graphs:
                yield from all_tensors(sg)


def model_files(model: PathLike) -> list[Path]:
    """The model file and every external data file it refers to (what reading the model touches)."""
    p = Path(model)
    try:
        st = os.stat(p)
    except OSError:
        return [p]
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MODEL_FILE:
        return [p]
    return [p] + [Path(f) for f in _external_files(os.path.realpath(p), st.st_mtime_ns, st.st_size)]


def check_destination(path: PathLike, label: str = "output") -> None:
    """Refuse a destination spa cannot replace safely: missing or unwritable directory, a directory, a symlink,
    a device, a FIFO or a socket (exit 5; a directory given for a file is exit 2)."""
    p = Path(path)
    if "\0" in str(p):
        raise BadArgument(f"{label} path contains a NUL byte")
    d = directory_of(p)
    if not d.is_dir():
        raise WriteFailed(f"{label} directory {d} does not exist")
    if not os.access(d, os.W_OK):
        raise WriteFailed(f"{label} directory {d} is not writable")
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise WriteFailed(f"cannot write {label} {p}: {e.strerror or e}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise BadArgument(f"{label} path {p} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise WriteFailed(f"{label} {p} is a {_kind(st.st_mode)}, not a regular file; spa replaces files "
                              "atomically and would destroy it: give a regular file name")
    try:
        name_max = os.pathconf(d, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(p.name)) > name_max:
        raise WriteFailed(f"{label} file name is longer than {name_max} bytes")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "symbolic link"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def check_io(*, models: Iterable[PathLike | None] = (), reads: Sequence[Named] = (),
             writes: Sequence[Named] = ()) -> None:
    """Refuse, before anything is read or written, a run that would write over what it reads, write one file
    twice, or write where it cannot. `models` are read with their external data files; `reads` and `writes`
    are (label, path) pairs as the user named them (a None path is skipped)."""
    read: list[tuple[str, Path]] = []
    for m in models:
        if m is None:
            continue
        files = model_files(m)
        read.append(("the input model", files[0]))
        read += [("the input model's external data", f) for f in files[1:]]
    read += [(label, Path(p)) for label, p in reads if p is not None]
    out = [(label, Path(p)) for label, p in writes if p is not None]
    for i, (wl, w) in enumerate(out):
        for rl, r in read:
            if same_file(w, r):
                raise BadArgument(f"{wl} {w} is {rl} ({r}); refusing to overwrite an input")
        for wl2, w2 in out[:i]:
            if same_file(w, w2):
                raise BadArgument(f"{wl} and {wl2} are the same file ({w}); give two different paths")
    for wl, w in out:
        check_destination(w, wl)


# ----------------------------------------------------------------------------------------------- read-ahead
_PREFETCHED: dict[str, tuple[tuple, threading.Thread, list[bytes]]] = {}


def _identity(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def prefetch(model: PathLike) -> None:
    """Start reading a model file in a background thread, for a command that has still to import numpy, onnx
    and onnxruntime before it can load it: the read releases the interpreter lock, so on a second core it
    costs no wall time (ResNet-50: 100 MB, 0.06-0.1 s). `take_prefetched` hands the bytes to the loader, which
    reads the file itself when there are none. Only a regular file that protobuf can hold is read; the last
    prefetch is the only one kept."""
    try:
        real = os.path.realpath(model)
        st = os.stat(real)
    except (OSError, ValueError):
        return
    if not stat.S_ISREG(st.st_mode) or not 0 < st.st_size <= MAX_MODEL_FILE:
        return
    box: list[bytes] = []

    def read() -> None:
        try:
            with open(real, "rb") as f:
                if _identity(os.fstat(f.fileno())) == _identity(st):
                    box.append(f.read())
        except OSError:  # the loader reads it again and says why
            pass

    _PREFETCHED.clear()
    t = threading.Thread(target=read, name="spa-prefetch", daemon=True)
    t.start()
    _PREFETCHED[real] = (_identity(st), t, box)


def take_prefetched(model: PathLike) -> bytes | None:
    """The bytes `prefetch` read, if the file is still the one it read (device, inode, size, mtime); else
    None."""
    try:
        real = os.path.realpath(model)
    except (OSError, ValueError):
        return None
    entry = _PREFETCHED.pop(real, None)
    if entry is None:
        return None
    ident, t, box = entry
    t.join()
    try:
        same = _identity(os.stat(real)) == ident
    except OSError:
        return None
    return box[0] if same and box and len(box[0]) == ident[2] else None


# ----------------------------------------------------------------------------------------------- writing
def default_mode() -> int:
    """Permissions a plain open() would give a new file (mkstemp's are 0600)."""
    um = os.umask(0)
    os.umask(um)
    return 0o666 & ~um


def debris_name(out: PathLike, kind: str) -> str:
    """A hidden name beside `out` for a temporary file ("tmp") or staging directory ("staging"): short enough
    for any output name, unique, and carrying this process's pid so a later run can tell it is stale."""
    stem = Path(out).name[:32]
    return f".{stem}.{os.getpid()}.{secrets.token_hex(4)}.spa-{kind}"


def remove_stale(d: PathLike, min_age: float = STALE_SECONDS) -> list[Path]:
    """Delete spa's own temporary files and staging directories in `d` whose writer is no longer alive (a run
    killed with SIGKILL leaves them) and that are older than `min_age` seconds. Returns what was removed."""
    import shutil

    removed: list[Path] = []
    try:
        entries = list(os.scandir(d))
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        m = _DEBRIS.match(e.name)
        if not m:
            continue
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        if now - st.st_mtime < min_age or _alive(int(m.group(1))) or st.st_uid != os.getuid():
            continue
        p = Path(e.path)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(p, ignore_errors=True)
        elif stat.S_ISREG(st.st_mode):
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def fsync_dir(d: PathLike) -> None:
    """Make a rename in `d` durable (best effort: not every file system lets a directory be opened)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: PathLike, content: bytes | str | Callable[[BinaryIO], None], *,
                 label: str = "output") -> int:
    """Write `content` (bytes, text as UTF-8, or a function writing into a binary file) to `path` through a
    temporary file in the same directory and one rename; returns the bytes written. On any failure or
    interrupt the destination is untouched and the temporary file is removed. OSError → WriteFailed (exit 5)."""
    out = Path(path)
    tmp = _temporary(out, label)
    return _commit(tmp, out, label, lambda: _fill(tmp, content))


class PendingWrite:
    """`atomic_write` of bytes in two steps, for a caller that has checks to run before the file may appear:
    the temporary file is written and fsynced in a background thread (the write releases the interpreter
    lock, so it overlaps the caller's checks), and `commit()` renames it into place; `abort()` removes it.
    Until `commit()` the destination is untouched. `spa prune` writes the pruned model while it is verified."""

    def __init__(self, path: PathLike, content: bytes, *, label: str = "output") -> None:
        self.out, self.label = Path(path), label
        self.tmp = _temporary(self.out, label)
        self._error: BaseException | None = None
        self._size = 0
        self._thread = threading.Thread(target=self._write, args=(content,), name="spa-write", daemon=True)
        self._thread.start()

    def _write(self, content: bytes) -> None:
        try:
            self._size = _fill(self.tmp, content)
        except BaseException as e:  # noqa: BLE001 - handed to the caller by commit()
            self._error = e

    def _written(self) -> int:
        if self._error is not None:
            raise self._error
        return self._size

    def commit(self) -> int:
        """Wait for the write, then rename it onto the destination; returns the bytes written."""
        self._thread.join()
        return _commit(self.tmp, self.out, self.label, self._written)

    def abort(self) -> None:
        """Wait for the write and remove the temporary file; the destination keeps what it had."""
        self._thread.join()
        self.tmp.unlink(missing_ok=True)


def _temporary(out: Path, label: str) -> Path:
    """The temporary file a write of `out` goes through (destination checked, dead writers' debris removed)."""
    check_destination(out, label)
    d = directory_of(out)
    remove_stale(d)
    return d / debris_name(out, "tmp")


def _fill(tmp: Path, content: bytes | str | Callable[[BinaryIO], None]) -> int:
    """Create `tmp` with `content`, fsynced, with a plain file's permissions; returns its size."""
    with open(tmp, "xb") as f:
        if callable(content):
            content(f)
        else:
            f.write(content.encode("utf-8") if isinstance(content, str) else content)
        f.flush()
        os.fsync(f.fileno())
        size = f.tell()
    os.chmod(tmp, default_mode())
    return size


def _commit(tmp: Path, out: Path, label: str, written: Callable[[], int]) -> int:
    """`written()` (the temporary file's size once it is complete), then the rename onto `out`; on any failure
    the temporary file is removed and `out` is untouched (OSError → WriteFailed, exit 5)."""
    try:
        size = written()
        publish(tmp, out, label=label)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WriteFailed(f"cannot write {out}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size


def publish(tmp: PathLike, path: PathLike, *, label: str = "output") -> None:
    """Rename a finished temporary file onto `path` (the commit point of every write), after re-checking that
    `path` is still a regular file or absent."""
    check_destination(path, label)
    try:
        os.replace(tmp, path)
    except OSError as e:
        raise WriteFailed(f"cannot write {path}: {e.strerror or e}") from None
    fsync_dir(directory_of(path))


# ------------------------------------------------------------------------------------ external data names
def data_file_name(out: PathLike) -> str:
    """A fresh name for the external data file of `out`: `<out name>.<16 hex>.data`. No existing file has it,
    so writing it replaces nothing (not an input's data file, not a user's `<out>.data`), and two runs writing
    the same output never share one."""
    return f"{Path(out).name[:200]}.{secrets.token_hex(8)}.data"


def is_own_data_file(out: PathLike, name: str) -> bool:
    """True if `name` has the pattern of a data file spa wrote for the output `out` (see `data_file_name`)."""
    return re.fullmatch(re.escape(Path(out).name[:200]) + r"\.[0-9a-f]{16}\.data", name) is not None
