# The offline demo / CI profile: no registry, GitHub or CUDA index can be reached.
# Local base image (debootstrap), core stage swapped for a local stand-in
# (tests/offline/offline.hcl), and SageAttention STAND-IN wheels served from a
# local wheelhouse over HTTP (sagefleet.offline builds and serves them).
# Hosts join this group when SAGEFLEET_OFFLINE=1 (the main job sets it when
# it cannot reach GitHub) or when a fleet file lists them under "offline".
# The wheelhouse URL and the pip CA bundle come from the run's environment: the
# inventory gives them to this group (sagefleet.offline.offline_group_data); a key
# set here or in a --group-data offline.py overrides them.

python_version = "3.11"  # bookworm's Python, the local base image's
sage_wheel_python_tag = "cp311"
local_wheelhouse = True
torch_index_url = "http://172.17.0.1:8765/torch-unused"  # core is a stand-in: no torch
extra_requirements = ["piexif==1.1.3"]  # one small real package, fetched from PyPI

bake_variables = {
    "REGISTRY_URL": "localhost/sagefleet",
    "IMAGE_LABEL": "latest",
    "BASE_IMAGE": "sagefleet/base:bookworm",
    "TORCH_VERSION": "2.9.0",  # group_data/all.py's torch_version
    "TORCH_INDEX_URL": torch_index_url,
}
build_context = ["services", "docker-bake.hcl", "tests/offline"]
bake_files = ["docker-bake.hcl", "tests/offline/offline.hcl"]
min_free_disk_gb = 2
verify_torch = False  # the stand-in core stage carries no torch
# The offline profile's nodes are containers without a GPU: run the probe and the
# service without one rather than refuse them as GPU nodes (docs/gpu.md).
gpu_access = "none"
