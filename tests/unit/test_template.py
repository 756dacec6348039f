"""templates/extra-requirements.txt.j2 rendered from the real group_data, against expected files.

The comment above each wheel URL must name the release and wheel build of that URL: a
comment that says one build while the URL fetches another is the bug this tool prevents.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path
from types import ModuleType

import jinja2
import pytest

from sagefleet.inputs import render_requirements
from sagefleet.offline import offline_group_data
from sagefleet.pins import validate

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = Path(__file__).parent / "expected"
WHEELHOUSE = "http://wheelhouse.test:8765"

COMMENT = re.compile(
    r"# (?P<name>\S+) (?P<version>\S+) \(pre-built wheel; release (?P<release>\S+), "
    r"wheel build (?P<build>\S+), (?P<py>cp3\d+) (?P<platform>\S+)\)"
)
URL = re.compile(
    r"(?P<base>\S+)/(?P<release>[^/]+)/(?P<name>[^-/]+)-(?P<version>[^-]+)-(?P<build>[^-]+)"
    r"-(?P<py>cp3\d+)-(?P=py)-(?P<platform>[^-]+)\.whl"
)


def group_data(name: str) -> dict:
    """A group_data file's variables, as pyinfra keeps them (no dunders, no modules)."""
    data = runpy.run_path(str(ROOT / "group_data" / name))
    return {
        k: v for k, v in data.items() if not k.startswith("_") and not isinstance(v, ModuleType)
    }


def render(*groups: str) -> str:
    data: dict = {}
    for name in groups:
        if name == "offline.py":  # the run's offline data, under offline.py (as the inventory)
            data.update(offline_group_data())
        data.update(group_data(name))
    return render_requirements(validate(data).image.template_vars())


@pytest.fixture(autouse=True)
def wheelhouse(monkeypatch):
    monkeypatch.setenv("SAGEFLEET_WHEELHOUSE_URL", WHEELHOUSE)


PROFILES = [
    (("all.py",), "extra-requirements.all.txt"),
    (("all.py", "offline.py"), "extra-requirements.offline.txt"),
]


@pytest.mark.parametrize("groups, expected", PROFILES, ids=["all", "offline"])
def test_render_matches_expected(groups, expected):
    assert render(*groups) == (EXPECTED / expected).read_text()


@pytest.mark.parametrize("groups", [p[0] for p in PROFILES], ids=["all", "offline"])
def test_comment_names_the_wheel_of_the_url(groups):
    lines = render(*groups).splitlines()
    urls = [i for i, line in enumerate(lines) if line.endswith(".whl")]
    assert len(urls) == 2
    for i in urls:
        comment, url = COMMENT.fullmatch(lines[i - 1]), URL.fullmatch(lines[i])
        assert comment and url, lines[i - 1 : i + 1]
        for part in ("name", "version", "release", "build", "py", "platform"):
            assert comment[part] == url[part], (part, lines[i - 1], lines[i])


def test_offline_urls_use_the_wheelhouse():
    text = render("all.py", "offline.py")
    assert f"{WHEELHOUSE}/v2.2.0-build.16/sageattention-2.2.0-290.129-cp311-cp311-" in text
    assert "github.com" not in text


def test_missing_variable_is_an_error():
    context = validate(group_data("all.py")).image.template_vars()
    del context["cuda_version"]
    with pytest.raises(jinja2.UndefinedError, match="cuda_version"):
        render_requirements(context)


def test_missing_wheel_field_is_an_error():
    context = validate(group_data("all.py")).image.template_vars()
    del context["wheels"][0]["build_tag"]
    with pytest.raises(jinja2.UndefinedError, match="build_tag"):
        render_requirements(context)
