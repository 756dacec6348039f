"""Exact refusals of the image pins' rules (pins/image.py, pins/wheels.py): tag length,
registry, build context (paths and git), wheel entries; and the edge values that pass."""

from __future__ import annotations

import pytest
from test_pins import GROUP, PinError, merged, sources, validate

B = GROUP
GIT = "https://git.example/x.git"

BAD = [
    ({"build_context": []}, f"{B}: build_context = []: must name at least one path (or be None)"),
    (
        {"build_context": {"git": "https://git.example/x.git", "ref": "v1", "depth": 1}},
        f"{B}: build_context.depth = 1: unknown key (expected dir, or git and ref)",
    ),
    (
        {"build_context": {"git": "https://git.example/x.git"}},
        f"{B}: build_context.ref = <missing>: required key is missing",
    ),
    (
        {"build_context": {"git": "http://git.example/x.git", "ref": "v1"}},
        f"{B}: build_context.git = 'http://git.example/x.git': http:// is only allowed with local_wheelhouse = True",
    ),
    (
        {"build_context": ["services", "../etc"]},
        f"{B}: build_context[1] = '../etc': path must not contain '..'",
    ),
    ({"build_context": ["/abs"]}, f"{B}: build_context[0] = '/abs': must be a relative path"),
    ({"sage_wheels": {}}, f"{B}: sage_wheels = {{}}: must pin at least one wheel"),
    (
        {"sage_wheels": {"sageattention": "2.2.0"}},
        f"{B}: sage_wheels.sageattention = '2.2.0': must be a dict with keys version, release_tag, build_tag",
    ),
    (
        {
            "sage_wheels": {
                "sage attention": {"version": "2.2.0", "release_tag": "v", "build_tag": "1"}
            }
        },
        f"{B}: sage_wheels = 'sage attention': contains ' ': whitespace, quotes and shell metacharacters are refused",
    ),
    (
        {
            "sage_wheels": {
                "sageattention": {"version": "2.2.0", "release_tag": "v2", "build_tag": "x1"}
            }
        },
        f"{B}: sage_wheels.sageattention.build_tag = 'x1': build tag must start with a digit (PEP 427)",
    ),
]


# build_context refs that are not valid git ref names
BAD_REFS = ["a..b", "v1/", "v1.", "v1.lock", "a//b"]


def refusal(data: dict) -> str:
    with pytest.raises(PinError) as info:
        validate(merged(data), sources(data))
    return str(info.value)


@pytest.mark.parametrize(("data", "message"), BAD)
def test_image_rules(data, message):
    assert refusal(data) == message


@pytest.mark.parametrize("ref", BAD_REFS)
def test_bad_git_refs(ref):
    message = f"{B}: build_context.ref = '{ref}': not a valid git ref name"
    assert refusal({"build_context": {"git": GIT, "ref": ref}}) == message


@pytest.mark.parametrize(
    "data",
    [
        {"build_context": {"git": GIT, "ref": "v1"}},
        {"build_context": {"git": "http://git.example/x.git", "ref": "v1"}, "local_wheelhouse": True},
        {"sage_wheels": {"sageattention": {"version": "2.2.0", "release_tag": "v2", "build_tag": "1x"}}},
    ],
)  # fmt: skip
def test_edges_that_pass(data):
    validate(merged(data), sources(data))


def test_git_context_fields():
    pins = validate(merged({"build_context": {"git": GIT, "ref": "v1.2"}}))
    ctx = pins.image.build_context
    assert (ctx.git, ctx.ref) == (GIT, "v1.2")
