"""sagefleet.report: table, fleet.json and fleet.html from recorded probe outputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from sagefleet import probe, report

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data" / "probe"
H100 = json.loads((ROOT / "docs" / "samples" / "h100-probe.json").read_text())
H100_GPU = {"name": "NVIDIA H100 80GB HBM3", "capability": "9.0", "driver": "580.159.04"}


def _records() -> list[dict]:
    def load(name):
        return json.loads((DATA / name).read_text())

    return [
        {
            "host": "h100-a",
            "gpus": [H100_GPU | {"memory_mib": 81559}],
            "image_id": "sha256:0123456789abcdef0123456789",
            "probe": H100,
        },
        {"host": "cpu-1", "gpus": [], "image_id": None, "probe": load("cpu-no-torch-kernels.json")},
        {
            "host": "broken",
            "gpus": [H100_GPU | {"driver": "570.86", "memory_mib": 81559}],
            "image_id": "sha256:fedcba9876543210fedcba",
            "probe": load("synthetic-sm90-broken-kernels.json"),
        },
        {"host": "unprobed", "gpus": [H100_GPU], "image_id": None, "probe": None},
    ]


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self.bars: list[dict] = []
        self.external: list[str] = []
        self._cell: list[str] | None = None
        self._in_tbody = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tbody":
            self._in_tbody = True
        elif tag == "tr" and self._in_tbody:
            self.rows.append([])
        elif tag == "td" and self._in_tbody:
            self._cell = []
        elif tag == "rect" and "bar" in (a.get("class") or "").split():
            self.bars.append(a)
        if tag in ("script", "link", "img") or a.get("src") or tag == "link":
            self.external.append(tag)

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tbody":
            self._in_tbody = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_table_contents():
    text = report.render_table(_records())
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["host", "GPU", "CC"]
    h100 = next(line for line in lines if line.startswith("h100-a"))
    assert "0123456789ab" in h100  # short image id, no sha256: prefix
    assert "1.0.6" in h100
    assert "auto=ok" in h100 and "sa3=-" in h100
    cos = H100["summary"]["sageattn"]["min_cosine"]
    med = H100["summary"]["sageattn"]["median_speedup_long"]
    assert f"{cos:.4f}" in h100
    assert f"{med:.2f}x" in h100
    assert "keep SDPA: sageattn median speedup" in h100
    cpu = next(line for line in lines if line.startswith("cpu-1"))
    assert "no-gpu" in cpu and cpu.rstrip().endswith("no GPU")
    broken = next(line for line in lines if line.startswith("broken"))
    assert "auto=ERR" in broken and "f16cu=ok" in broken and "f8sm90=ERR" in broken
    assert "keep SDPA: sageattn status error" in broken
    assert next(line for line in lines if line.startswith("unprobed")).endswith("not probed")


def test_recommendation_comes_from_the_probe_or_the_same_function():
    recs = _records()
    assert report.host_recommendation(recs[0]) == H100["recommendation"]
    # the synthetic record carries no recommendation: computed by probe.recommend here
    computed = report.host_recommendation(recs[2])
    summary = probe.summarize(recs[2]["probe"]["kernels"])
    expected = probe.recommend(
        summary, recs[2]["probe"]["gpu"], "sageattn_qk_int8_pv_fp8_cuda_sm90"
    )
    assert computed == expected
    assert computed["use_sage_attention"] is False
    # the H100 record with its recommendation removed decides the same way
    stripped = dict(recs[0], probe={k: v for k, v in H100.items() if k != "recommendation"})
    assert report.host_recommendation(stripped) == H100["recommendation"]


SAMPLES = ROOT / "docs" / "samples"


def _builds() -> list[dict]:
    """The two builds of sageattention 2.2.0 recorded on the device's H100 (docs/probe.md)."""
    gpus = [H100_GPU | {"memory_mib": 81559}]

    def rec(host, name):
        return {"host": host, "gpus": gpus, "image_id": None, "probe": _sample(name)}

    return [
        rec("tag", "h100-probe-sa220-tag-eb615cf.json"),
        rec("fix", "h100-probe-sa220-fix-ff71e1e.json"),
        rec("fix-long", "h100-probe-long-sa220-fix-ff71e1e.json"),
    ]


def _sample(name):
    return json.loads((SAMPLES / name).read_text())


def test_inaccurate_build_and_crossover_in_table_and_html():
    records = _builds()
    rows = {r[0]: dict(zip(report.COLUMNS, r, strict=True)) for r in report.table_rows(records)}
    tag, fix, long = rows["tag"], rows["fix"], rows["fix-long"]
    assert "auto=WRONG" in tag["kernels"] and "f8sm90=WRONG" in tag["kernels"]
    assert "f16tri=ok" in tag["kernels"]
    assert tag["recommendation"].startswith("keep SDPA: sageattn is inaccurate: 16/16 shapes")
    assert tag["speedup vs SDPA"] == "-"  # its recorded 1.08x is garbage
    assert fix["speedup vs SDPA"] == "0.62x"
    assert "auto=ok" in fix["kernels"] and "WRONG" not in fix["kernels"]
    # same version, no build tag: the fingerprint tells the builds apart
    assert tag["sageattention"] == fix["sageattention"] == "2.2.0"
    digest = records[0]["probe"]["packages"]["sageattention"]["fingerprint"]["digest"]
    assert tag["build"] == digest.removeprefix("sha256:")[:12]
    assert tag["build"] != fix["build"] == long["build"]
    assert (tag["crossover"], fix["crossover"], long["crossover"]) == ("none", "none", ">= 16384")
    assert long["recommendation"] == (
        "--use-sage-attention (kernel sageattn_qk_int8_pv_fp8_cuda_sm90)"
    )
    parser = _Collect()
    parser.feed(report.render_html(records))
    html_rows = {row[0]: row for row in parser.rows}
    assert html_rows["tag"][report.COLUMNS.index("kernels")].startswith("auto=WRONG")
    assert html_rows["fix-long"][report.COLUMNS.index("crossover")] == ">= 16384"


def test_build_label_names_the_vcs_commit_and_modified_files():
    probe_doc = {
        "packages": {
            "sageattention": {
                "fingerprint": {
                    "digest": "sha256:" + "ab" * 32,
                    "vcs_commit": "ff71e1e7ce086fff8669e7eb116ee77e265dbac1",
                    "modified": 2,
                }
            }
        }
    }
    label = report.build_label({"probe": probe_doc})
    assert label == "abababababab@ff71e1e (2 files modified)"
    assert report.build_label({"probe": {"packages": {}}}) == "-"
    assert report.build_label({"probe": None}) == "-"


def test_recommended_label():
    rec = {"use_sage_attention": True, "kernel": "sageattn_qk_int8_pv_fp8_cuda_sm90", "reason": ""}
    label = report.recommendation_label(_records()[0], rec)
    assert label == "--use-sage-attention (kernel sageattn_qk_int8_pv_fp8_cuda_sm90)"


def test_write_reports_json_and_html(tmp_path):
    records = _records()
    json_path, html_path = report.write_reports(records, tmp_path / "reports")
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["fleet.html", "fleet.json"]
    doc = json.loads(json_path.read_text())
    assert doc["schema"] == report.REPORT_SCHEMA
    assert [h["host"] for h in doc["hosts"]] == ["h100-a", "cpu-1", "broken", "unprobed"]
    assert doc["hosts"][0]["recommendation"] == H100["recommendation"]
    assert doc["hosts"][0]["probe"] == H100
    assert doc["hosts"][1]["label"] == "no GPU"
    assert doc["hosts"][2]["summary"]["sageattn_qk_int8_pv_fp16_cuda"]["status"] == "ok"

    parser = _Collect()
    parser.feed(html_path.read_text())
    assert parser.external == []
    assert [row[0] for row in parser.rows] == ["h100-a", "cpu-1", "broken", "unprobed"]
    assert all(len(row) == len(report.COLUMNS) for row in parser.rows)
    assert parser.rows[0][-1].startswith("keep SDPA")
    # one bar per host x shape: only h100-a has sageattn shapes
    assert len(parser.bars) == len(H100["kernels"][0]["shapes"]) == 16


def test_svg_one_bar_per_host_and_shape(tmp_path):
    second = {"host": "h100-b", "gpus": [H100_GPU], "image_id": None, "probe": H100}
    records = [_records()[0], second]
    _, html_path = report.write_reports(records, tmp_path)
    parser = _Collect()
    parser.feed(html_path.read_text())
    assert len(parser.bars) == 2 * 16
    bars = report.chart_bars(records)
    assert {(b["host"], b["shape"]) for b in bars} == {
        (h, report.shape_label(s))
        for h in ("h100-a", "h100-b")
        for s in H100["kernels"][0]["shapes"]
    }


def test_atomic_write_leaves_no_temp_files(tmp_path):
    report.write_reports(_records(), tmp_path)
    report.write_reports(_records(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.html", "fleet.json"]


def test_cli(tmp_path):
    records_path = tmp_path / "records.json"
    records_path.write_text(json.dumps(_records()))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "sagefleet.report", str(records_path), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("host")
    assert (out / "fleet.json").exists() and (out / "fleet.html").exists()
    # fleet.json reads back as input
    assert report.load_records(out / "fleet.json")[0]["host"] == "h100-a"
    bad = tmp_path / "bad.json"
    bad.write_text('{"nope": 1}')
    proc = subprocess.run(
        [sys.executable, "-m", "sagefleet.report", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2 and "expected a list of host records" in proc.stderr


def test_h100_sample_renders_in_headless_chromium(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("chromium is not installed")
    _, html_path = report.write_reports(_records()[:1], tmp_path)
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", html_path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('class="bar ') == 16
    assert "h100-a" in proc.stdout
