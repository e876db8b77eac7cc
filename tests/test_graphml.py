"""The dependency graph as networkx (Analysis.to_networkx) and `spa analyze --graphml`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import networkx as nx
import onnx

from spa import api

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "models" / "samples" / "resnet18_tiny.onnx"


def test_to_networkx_has_ops_tensors_groups_and_their_members():
    a = api.analyze(SAMPLE).analysis
    g = a.to_networkx()
    model = onnx.load(SAMPLE)
    ops = [n for n, d in g.nodes(data=True) if d["kind"] == "op"]
    assert len(ops) == len(model.graph.node)
    groups = {d["group"]: d for _, d in g.nodes(data=True) if d["kind"] == "group"}
    assert sorted(groups) == [grp.id for grp in a.groups]
    for grp in a.groups:
        d = groups[grp.id]
        assert (d["channels"], d["prunable"], d["reason"] or "") == (grp.size, grp.prunable, grp.why or "")
        members = {(u.removeprefix("tensor:"), e["axis"]) for u, _, e in g.in_edges(f"group:{grp.id}", data=True)}
        assert members == {(m.tensor, m.axis) for m in grp.members}
        for m in grp.members:
            assert str(grp.id) in g.nodes[f"tensor:{m.tensor}"]["groups"].split(",")
    # the data flow: every node's inputs and outputs are edges
    for i, node in enumerate(model.graph.node):
        op = f"op:{node.name}" if node.name else f"op:#{i}"
        assert {u for u, _ in g.in_edges(op)} >= {f"tensor:{t}" for t in node.input if t}
        assert {v for _, v in g.out_edges(op)} == {f"tensor:{t}" for t in node.output if t}
    assert nx.is_directed_acyclic_graph(nx.DiGraph((u, v) for u, v, e in g.edges(data=True) if e["kind"] != "member"))


def test_analyze_graphml_loads_back_with_group_attributes(tmp_path):
    out = tmp_path / "deps.graphml"
    r = subprocess.run([sys.executable, "-m", "spa", "analyze", str(SAMPLE), "--graphml", str(out), "--json"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    groups = json.loads(r.stdout)["groups"]
    g = nx.read_graphml(out, force_multigraph=True)
    got = {d["group"]: d for _, d in g.nodes(data=True) if d["kind"] == "group"}
    assert len(got) == len(groups)
    for grp in groups:
        d = got[grp["id"]]
        assert d["channels"] == grp["channels"] and d["prunable"] == grp["prunable"]
        assert d["status"] in ("prunable", "lossy", "frozen") and (d["status"] == "frozen") == (not grp["prunable"])
    assert any(e["kind"] == "member" for _, _, e in g.edges(data=True))
    assert not list(tmp_path.glob(".*tmp"))


def test_graphml_never_over_the_input(tmp_path):
    src = tmp_path / "m.onnx"
    src.write_bytes(SAMPLE.read_bytes())
    r = subprocess.run([sys.executable, "-m", "spa", "analyze", str(src), "--graphml", str(src)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "--graphml" in r.stderr
    assert src.read_bytes() == SAMPLE.read_bytes()
