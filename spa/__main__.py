"""`python -m spa` and the `spa` script: the command, with Ctrl-C during start-up (importing the command
line takes a moment) ending in one line instead of a traceback.

A command is one short process that holds a whole model in memory, so two process-level settings pay here
(and only here: the library, imported by other programs, leaves their process alone):
- glibc malloc keeps what it frees (`keep_freed_memory`): the weights are copied several times (file bytes,
  protobuf, numpy, the rewritten arrays, the serialised output), and by default every large copy gets fresh
  pages from the kernel, each one a page fault, and goes back to it when freed. ResNet-50's whole
  `spa prune` took 1.09 -> 0.82 s with the same settings given as MALLOC_* environment variables
  (benchmarks/startup_floor.txt as of commit 840ae50).
- the interpreter's teardown is skipped (`_exit`): once the command has written its output and flushed its
  streams, freeing the model object by object only delays the exit (0.14-0.17 s on ResNet-50, loaded machine). atexit
  handlers (and with them weakref finalizers such as temporary directories) still run first.
"""

import atexit
import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -2, -3, -8  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> None:
    """Ask glibc's malloc to serve large blocks from its heap and keep freed memory, so that the next copy of
    the weights reuses pages that are already mapped. A no-op off glibc (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return
    mallopt(M_MMAP_THRESHOLD, 256 << 20)  # blocks up to 256 MB from the heap, not from a fresh mmap each
    mallopt(M_TRIM_THRESHOLD, 1 << 30)  # keep up to 1 GB of freed heap instead of returning it
    mallopt(M_TOP_PAD, 64 << 20)  # grow the heap in 64 MB steps
    # one heap for every thread: the input is read on a second thread (io_safety.prefetch), and its bytes, once
    # parsed and freed, are where the weights' arrays are copied next; in that thread's own arena they were not
    # (ResNet-50: making the arrays after a prefetch took 0.059 s, 0.014 s with one arena; benchmarks/first_touch.txt)
    mallopt(M_ARENA_MAX, 1)


def _exit(code: int) -> None:
    """Exit without the interpreter's teardown: run the atexit handlers, flush the streams, then leave."""
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said
                pass
        os._exit(code)


def run() -> None:
    keep_freed_memory()
    try:
        from .cli import main
    except KeyboardInterrupt:
        print("spa: error: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    try:
        main()
    except SystemExit as e:
        code = e.code
    else:  # pragma: no cover - main always ends in SystemExit
        code = 0
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    _exit(code or 0)


if __name__ == "__main__":
    run()
