"""`spa.tools.html`: the self-contained HTML report (structure, escaping, no external resources) and what a headless
Chromium actually draws from it."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import onnx
import pytest

import spa
from spa.tools.html import PALETTE, render, to_html

pytestmark = pytest.mark.html

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "models" / "samples" / "resnet18_tiny.onnx"
EVIL_NODE = '<script>alert("n&o")</script>'
EVIL_INIT = "w<b>\"&'x"


@pytest.fixture(scope="module")
def report():
    return spa.analyze(SAMPLE)


@pytest.fixture(scope="module")
def plan():
    _, rep = spa.prune(SAMPLE, ratio=0.5)
    return rep.plan


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.rows: list[str] = []
        self.node_titles: list[str] = []
        self.texts: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        d = dict(attrs)
        self.attrs += [(k, v or "") for k, v in attrs]
        if tag == "tr" and "data-g" in d:
            self.rows.append(d["data-g"])
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        self.texts.append(data)
        if self._in_title:
            self.node_titles.append(data)


def _parse(text: str) -> _Collect:
    p = _Collect()
    p.feed(text)
    p.close()
    return p


def _check_self_contained(text: str) -> None:
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text.lower() and "@import" not in text and "@font-face" not in text
    assert not re.search(r"""\s(src|href)\s*=""", text), "no external references"


def test_analyze_report_html(report, tmp_path):
    out = tmp_path / "r.html"
    render(report, out)
    text = out.read_text(encoding="utf-8")
    p = _parse(text)
    for tag in ("html", "svg", "table", "script", "style", "input"):
        assert tag in p.tags
    ids = [str(g.id) for g in report.analysis.groups]
    assert p.rows == ids  # one row per group, every id
    _check_self_contained(text)
    n_nodes = len(report.analysis.view.model.graph.node)
    assert text.count('<g class="n') == n_nodes + len(report.analysis.view.graph_inputs) + len(
        report.analysis.view.graph_outputs
    )
    # the prunable groups' colours are used; a frozen reason reaches a tooltip
    assert PALETTE[1] in text
    frozen = [g for g in report.analysis.groups if not g.prunable]
    assert frozen and any(frozen[0].why in t for t in p.node_titles)
    assert f"{report.stats.nodes}" in text


def test_plan_widths(report, plan, tmp_path):
    out = tmp_path / "p.html"
    render(report, out, plan=plan, title="tiny & pruned")
    text = out.read_text(encoding="utf-8")
    p = _parse(text)
    assert p.rows == [str(g.id) for g in report.analysis.groups]
    _check_self_contained(text)
    assert "tiny &amp; pruned" in text
    flat = " ".join(p.texts)
    by_key = {g.key: g for g in report.analysis.groups}
    assert plan.groups
    for gp in plan.groups:
        assert gp.key in by_key
        assert f"{gp.size} → {len(gp.keep)}" in flat
    assert f"{plan.removed:,}" in flat


def test_names_are_escaped(tmp_path):
    m = onnx.load(str(SAMPLE))
    m.graph.node[0].name = EVIL_NODE
    # rename a weight (a group member) too
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    old = conv.input[1]
    for t in m.graph.initializer:
        if t.name == old:
            t.name = EVIL_INIT
    for n in m.graph.node:
        for k, i in enumerate(n.input):
            if i == old:
                n.input[k] = EVIL_INIT
    rep = spa.analyze(m)
    text = to_html(rep, title=EVIL_NODE)
    assert text.count("<script") == 1  # only ours
    assert EVIL_NODE not in text and EVIL_INIT not in text
    assert "&lt;script&gt;alert(&quot;n&amp;o&quot;)&lt;/script&gt;" in text
    assert "w&lt;b&gt;&quot;&amp;&#x27;x" in text
    p = _parse(text)
    assert any(EVIL_NODE in t for t in p.node_titles)  # the parsed tooltip holds the real name
    assert any(EVIL_INIT in v for _, v in p.attrs)  # the members tooltip too
    assert p.rows == [str(g.id) for g in rep.analysis.groups]


# ------------------------------------------------------------------------------------ headless Chromium
def _png_pixels(data: bytes) -> list[tuple[int, ...]]:
    """Decode an 8-bit, non-interlaced RGB or RGBA PNG into a list of RGB tuples."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, hdr = 8, [], None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    assert hdr is not None
    w, h, depth, ctype, _, _, interlace = hdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, f"unsupported PNG {hdr}"
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = w * bpp
    prev = bytearray(stride)
    out: list[tuple[int, ...]] = []
    i = 0
    for _ in range(h):
        f = raw[i]
        line = bytearray(raw[i + 1 : i + 1 + stride])
        i += 1 + stride
        if f == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 0xFF
        elif f == 2:
            for x in range(stride):
                line[x] = (line[x] + prev[x]) & 0xFF
        elif f == 3:
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + ((left + prev[x]) >> 1)) & 0xFF
        elif f == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b = prev[x]
                c = prev[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 0xFF
        else:
            assert f == 0, f"bad filter {f}"
        out.extend(tuple(line[x : x + 3]) for x in range(0, stride, bpp))
        prev = line
    return out


def _chromium() -> str | None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but chromium is not on PATH: `apt-get install -y chromium` for the HTML tests")
        pytest.skip("chromium not installed")
    return exe


def _chromium_args(exe: str, tmp: Path) -> list[str]:
    return [
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp / 'profile'}",
    ]  # fmt: skip


def test_chromium_screenshot(report, plan, tmp_path):
    exe = _chromium()
    page = tmp_path / "report.html"
    render(report, page, plan=plan)
    shot = tmp_path / "shot.png"
    r = subprocess.run(
        _chromium_args(exe, tmp_path) + [f"--screenshot={shot}", "--window-size=1400,1000", page.as_uri()],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shot.exists() and shot.stat().st_size > 0, r.stderr[-2000:]
    px = _png_pixels(shot.read_bytes())
    assert len(px) == 1400 * 1000
    want = tuple(int(PALETTE[1][k : k + 2], 16) for k in (1, 3, 5))
    n = sum(1 for p in px if p == want)
    assert n > 3000, f"group 1 colour {PALETTE[1]} in only {n} pixels: the graph did not render"
    assert len(set(px)) > 5, "blank screenshot"


def test_chromium_runs_the_script(report, tmp_path):
    """The inline script runs without error: a #g=N link highlights group N's nodes and row."""
    exe = _chromium()
    page = tmp_path / "report.html"
    render(report, page)
    r = subprocess.run(
        _chromium_args(exe, tmp_path) + ["--dump-dom", page.as_uri() + "#g=1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    dom = r.stdout
    assert "<svg" in dom, r.stderr[-2000:]
    assert re.search(r'<svg id="graph"[^>]*class="hi"', dom), "group link did not highlight"
    assert re.search(r'<tr data-g="1"[^>]*class="prunable sel"', dom)
    assert dom.count("class=\"n hl") + dom.count("class=\"n fz hl") >= 3
    assert "11 / 11 groups" in dom or f"{len(report.analysis.groups)} / {len(report.analysis.groups)} groups" in dom
