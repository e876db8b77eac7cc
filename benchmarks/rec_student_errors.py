"""Where a distilled PP-OCRv4 rec student misreads: the validation digit strings of benchmarks/distill_rec_heldout.py
(`validation()`, never a held-out set) read by the teacher and by a student, every line where the two differ printed.

    .venv/bin/python benchmarks/rec_student_errors.py DIR STUDENT.onnx   (DIR: a distill_rec_heldout temp dir, orig.onnx)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import distill_rec_heldout as R
from obspa_ocr import charset, edit

from spa.verify import session


def read(m: onnx.ModelProto, x: np.ndarray, chars: list[str]) -> list[str]:
    """Greedy CTC transcriptions (repeats merged, blank 0 dropped)."""
    s = session(m, optimize=True, threads=2)
    name = m.graph.input[0].name
    best = np.concatenate([s.run(None, {name: x[i:i + 16]})[0] for i in range(0, len(x), 16)]).argmax(-1)
    out = []
    for q in best:
        keep = np.ones(len(q), bool)
        keep[1:] = q[1:] != q[:-1]
        out.append("".join(chars[k] for k in q[keep & (q != 0)]))
    return out


def main() -> None:
    d, student = Path(sys.argv[1]), sys.argv[2]
    orig, stu = onnx.load(str(d / "orig.onnx")), onnx.load(str(d / student))
    chars = charset(orig)
    val, _ = R.validation([], {})
    print(f"# teacher {d / 'orig.onnx'}, student {d / student}")
    for dist in ("val-numbers", "val-numbers-inverted"):
        x, texts = val[dist]
        t, s = read(orig, x, chars), read(stu, x, chars)
        n = sum(map(len, texts))
        acc_t = 1 - sum(edit(a, b) for a, b in zip(t, texts)) / n
        acc_s = 1 - sum(edit(a, b) for a, b in zip(s, texts)) / n
        diff = [(a, b, c) for a, b, c in zip(texts, t, s) if b != c]
        print(f"{dist}: teacher {acc_t:.4f}, student {acc_s:.4f} ({acc_s / acc_t:.4f} of the teacher); "
              f"{len(diff)} of {len(texts)} lines read differently")
        for a, b, c in diff:
            print(f"  truth {a!r:24} teacher {b!r:24} student {c!r}")


if __name__ == "__main__":
    main()
