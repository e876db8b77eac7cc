"""Analysis and prune time vs graph size on generated residual chains (models/synthetic.py).

    .venv/bin/python benchmarks/scaling.py > benchmarks/scaling.txt
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import spa  # noqa: E402
from models.synthetic import residual_chain  # noqa: E402
from spa.analysis import analyze  # noqa: E402
from spa.api import prepare  # noqa: E402


def main() -> None:
    print("# residual chains, 16 channels, 8x8; in-process seconds (best of 2); spa.prune ratio 0.5 l1 incl. verify")
    print(f"{'nodes':>7s} {'groups':>7s} {'prepare':>8s} {'analyze':>8s} {'prune':>8s} {'analyze us/node':>16s}")
    for blocks in (250, 500, 1000, 2000):
        m = residual_chain(blocks)
        best = {"prepare": 1e9, "analyze": 1e9, "prune": 1e9}
        for _ in range(2):
            t0 = time.perf_counter()
            view, _ = prepare(m)
            t1 = time.perf_counter()
            a = analyze(view)
            t2 = time.perf_counter()
            spa.prune(m, ratio=0.5)
            t3 = time.perf_counter()
            best = {"prepare": min(best["prepare"], t1 - t0), "analyze": min(best["analyze"], t2 - t1),
                    "prune": min(best["prune"], t3 - t2)}
        n = len(m.graph.node)
        print(f"{n:7d} {len(a.groups):7d} {best['prepare']:8.3f} {best['analyze']:8.3f} {best['prune']:8.3f} "
              f"{best['analyze'] / n * 1e6:16.1f}", flush=True)


if __name__ == "__main__":
    main()
