"""scripts/render-samples (`make samples`): the sample reports the docs point at are
rendered from the committed probe evidence, and say what the docs say they say."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    path = ROOT / "scripts" / "render-samples"
    loader = importlib.machinery.SourceFileLoader("render_samples", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _rows(html: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-host="([^"]+)">(.*?)</tr>', html))


def test_samples_render_every_run_with_the_documented_verdicts(tmp_path: Path) -> None:
    assert _script().main(["--out", str(tmp_path)]) == 0
    written = sorted(p.parent.name for p in tmp_path.glob("*/fleet.html"))
    assert written == ["h100", "h100-engine-api", "h200-quick-probe", "h200-workload-probe"]
    h100 = _rows((tmp_path / "h100" / "fleet.html").read_text())
    assert list(h100) == ["h100-sa220-tag", "h100-sa220-fix", "h100-sa220-fix-long", "h100-sa106"]
    # docs/probe.md: the v2.2.0 tag's sm90 kernel is WRONG; the fixed build's is ok.
    assert "f8sm90=WRONG" in h100["h100-sa220-tag"]
    assert "f8sm90=ok" in h100["h100-sa220-fix"]
    assert "NVIDIA H100 80GB HBM3" in h100["h100-sa106"]
    # docs/samples/gpu-e2e/h200-workload-probe/README.md: crossover >= 16384, flag on.
    (workload,) = _rows((tmp_path / "h200-workload-probe" / "fleet.html").read_text()).values()
    assert "&gt;= 16384" in workload and "--use-sage-attention" in workload
    (quick,) = _rows((tmp_path / "h200-quick-probe" / "fleet.html").read_text()).values()
    assert "keep SDPA" in quick
    # docs/samples/gpu-e2e/h100-engine-api/README.md: 0.70x at seq 4096, keep SDPA.
    (api,) = _rows((tmp_path / "h100-engine-api" / "fleet.html").read_text()).values()
    assert "keep SDPA" in api and "0.70x" in api and "NVIDIA H100 80GB HBM3" in api
