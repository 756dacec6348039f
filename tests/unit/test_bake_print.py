"""`docker buildx bake --print` answers (recorded from real bakes of the fixture
project tests/fixtures/imagerepo and of our own layout) parsed into typed targets,
and the overrides sagefleet adds through --set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sagefleet.bake import (
    BakeError,
    cache_sets,
    check_cache_ref,
    label_set,
    parse_print,
    print_argv,
    set_args,
)

DATA = Path(__file__).parent / "data" / "bake" / "print"
INPUTS = "sha256:" + "ab" * 32


def load(name: str):
    return parse_print((DATA / name).read_text())


def test_fixture_target_resolved_with_the_hosts_variables():
    d = load("fixture-complete.json")
    t = d.target("complete-cuda")
    assert t.tags == (
        "localhost/sfbakefix/complete:cuda-t1",
        "localhost/sfbakefix/complete:cuda-cache",
    )
    assert (t.context, t.dockerfile) == ("services/comfy/complete", "dockerfile.complete.cuda")
    assert t.contexts == {"core": "target:core-cuda"}
    assert t.target_dependencies == ("core-cuda",)
    assert t.platforms == ("linux/amd64",)
    assert t.cache_from == ("type=registry,ref=127.0.0.1:9/fixture-cache/complete:cuda-cache",)
    assert "org.sagefleet.inputs" not in t.labels
    assert d.target("runtime-cuda").args == {"BASE_IMAGE": "sagefleet/base:bookworm"}
    assert d.groups == {"default": ("complete-cuda",)}


def test_image_ref_is_the_first_tag_or_the_named_one():
    d = load("fixture-complete.json")
    assert d.image_ref("complete-cuda") == "localhost/sfbakefix/complete:cuda-t1"
    assert (
        d.image_ref("complete-cuda", "localhost/sfbakefix/complete:cuda-cache")
        == "localhost/sfbakefix/complete:cuda-cache"
    )
    with pytest.raises(BakeError, match="is not a tag of bake target 'complete-cuda'"):
        d.image_ref("complete-cuda", "localhost/sfbakefix/complete:latest")


def test_defaults_of_the_bake_file_when_no_variables_are_given():
    d = load("fixture-defaults.json")
    assert d.image_ref("complete-cuda") == "registry.invalid/fixture/complete:cuda-dev"


def test_chain_follows_named_target_contexts_dependencies_first():
    assert load("fixture-complete.json").chain("complete-cuda") == (
        "runtime-cuda",
        "core-cuda",
        "complete-cuda",
    )
    assert load("own-offline.json").chain("core-cuda") == ("runtime-cuda", "core-cuda")


def test_requirements_go_into_the_targets_own_context():
    d = load("fixture-complete.json")
    assert d.requirements_path("complete-cuda") == "services/comfy/complete/extra-requirements.txt"
    assert d.requirements_path("complete-cuda", "./reqs/../reqs/extra.txt") == "reqs/extra.txt"
    own = load("own-offline.json")
    assert own.requirements_path("complete-cuda") == (
        "services/comfy/complete/extra-requirements.txt"
    )
    assert own.target("core-cuda").context == "tests/offline/core"


@pytest.mark.parametrize(
    "path, message",
    [
        ("../outside.txt", "leaves the build context"),
        ("/etc/passwd", "must be relative"),
        (".", "leaves the build context"),
        ("a\nb", "is not a relative path"),
    ],
)
def test_requirements_path_stays_inside_the_context(path, message):
    with pytest.raises(BakeError, match=message):
        load("fixture-complete.json").requirements_path("complete-cuda", path)


def test_remote_context_needs_an_explicit_requirements_path():
    doc = {"target": {"t": {"context": "https://github.com/o/r.git#v1", "tags": ["x/y:z"]}}}
    d = parse_print(json.dumps(doc))
    with pytest.raises(BakeError, match="remote context .* set requirements_path"):
        d.requirements_path("t")
    assert d.requirements_path("t", "extra.txt") == "extra.txt"


def test_own_layout_tags_and_overrides_recorded():
    own = load("own-offline.json")
    assert own.image_ref("complete-cuda") == (
        "localhost/sagefleet/comfyui-docker/complete-cuda:latest"
    )
    over = load("fixture-overrides.json").target("complete-cuda")
    assert over.labels["org.sagefleet.inputs"] == "sha256:0123"
    assert over.cache_from == ("type=registry,ref=registry.example/cache:complete-cuda",)
    assert over.cache_to == ("type=registry,ref=registry.example/cache:complete-cuda,mode=max",)


def test_group_print_lists_every_target():
    d = load("fixture-group-cuda.json")
    assert set(d.targets) == {"runtime-cuda", "core-cuda", "complete-cuda"}
    assert d.groups["cuda"] == ("runtime-cuda", "core-cuda", "complete-cuda")


@pytest.mark.parametrize(
    "text, message",
    [
        ("#1 [internal] load local bake definitions", "did not answer JSON"),
        ('{"group": {}}', "no 'target' object"),
        ('{"target": {"t": {"tags": "x:y"}}}', "expected a list of strings"),
        ('{"target": {"t": {"tags": ["UPPER/case:x"]}}}', "is not an image reference"),
        ('{"target": {"t": {"args": {"A": 1}}}}', "expected a string"),
        ('{"target": {"t": {"context": ["a"]}}}', "expected a string"),
    ],
)
def test_malformed_answers_are_refused(text, message):
    with pytest.raises(BakeError, match=message):
        parse_print(text)


def test_missing_target_and_tagless_target():
    d = parse_print('{"target": {"t": {"args": {"A": null}}}}')
    assert d.target("t").args == {"A": ""}
    with pytest.raises(BakeError, match=r"'u' is not in bake's answer \(targets: t\)"):
        d.target("u")
    with pytest.raises(BakeError, match="has no tags"):
        d.image_ref("t")


def test_cycle_through_named_contexts_is_refused():
    doc = {
        "target": {
            "a": {"contexts": {"x": "target:b"}},
            "b": {"contexts": {"y": "target:a"}},
        }
    }
    with pytest.raises(BakeError, match="depends on itself"):
        parse_print(json.dumps(doc)).chain("a")


def test_label_and_cache_overrides():
    assert (
        label_set("complete-cuda", INPUTS) == f"complete-cuda.labels.org.sagefleet.inputs={INPUTS}"
    )
    with pytest.raises(BakeError, match="is not 'sha256:<64 hex>'"):
        label_set("complete-cuda", "sha256:x;rm -rf /")
    with pytest.raises(BakeError, match="invalid bake target"):
        label_set("a.b", INPUTS)
    sets = cache_sets(["core-cuda", "complete-cuda"], "reg.example:5000/team/cache")
    assert sets == [
        "core-cuda.cache-from=type=registry,ref=reg.example:5000/team/cache:core-cuda",
        "core-cuda.cache-to=type=registry,ref=reg.example:5000/team/cache:core-cuda,mode=max",
        "complete-cuda.cache-from=type=registry,ref=reg.example:5000/team/cache:complete-cuda",
        "complete-cuda.cache-to=type=registry,ref=reg.example:5000/team/cache:complete-cuda,mode=max",
    ]
    assert set_args(sets[:1]) == ["--set", sets[0]]


@pytest.mark.parametrize(
    "ref",
    ["https://reg.example/cache", "reg.example/cache:tag", "Reg.example/cache", "cache", "a/b,c=d"],
)
def test_cache_ref_must_be_a_repository(ref):
    with pytest.raises(BakeError, match="is not a registry repository"):
        check_cache_ref(ref)


def test_print_argv():
    assert print_argv(["a.hcl", "b c.hcl"], "complete-cuda", ["--set", "x=y"]) == [
        "docker", "buildx", "bake", "-f", "a.hcl", "-f", "b c.hcl", "--set", "x=y",
        "--print", "complete-cuda",
    ]  # fmt: skip
    with pytest.raises(BakeError):
        print_argv(["a.hcl"], "--load")
