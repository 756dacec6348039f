# Pins and settings for every host. Data only: sagefleet.pins validates it
# before any host is contacted, and derives wheel file names and URLs from it.
# Precedence (pyinfra): --data > host > group file (e.g. blackwell.py) > this file.

# --- The image: what complete-cuda is built from -----------------------------
python_version = "3.12"  # the image's Python; wheel python tags must match it
torch_version = "2.9.0"
cuda_version = "12.9"
torch_index_url = "https://download.pytorch.org/whl/cu129"

# --- SageAttention wheels, pre-built ------------------------------------------
# File name: {name}-{version}-{build_tag}-{python_tag}-{python_tag}-{platform}.whl
# URL:       {sage_release_base}/{release_tag}/{file name}
sage_release_base = "https://github.com/pixeloven/SageAttention/releases/download"
sage_wheel_python_tag = "cp312"
sage_wheel_platform = "linux_x86_64"
sage_wheels = {
    "sageattention": {
        "version": "2.2.0",
        "release_tag": "v2.2.0-build.16",
        "build_tag": "290.129",
    },
    "sageattn3": {
        "version": "1.0.0",
        "release_tag": "v2.2.0-build.16",
        "build_tag": "290.129",
    },
}
require_sageattn3 = False  # the blackwell group turns this on
# http:// and file:// wheel URLs are refused unless a group marks a local wheelhouse.
local_wheelhouse = False

# --- Other extra requirements of the complete image (PEP 508, pinned) ---------
extra_requirements = [
    "triton==3.5.0",
    "accelerate==1.11.0",
    "onnxruntime-gpu==1.23.2",
    "diffusers==0.35.2",
    "opencv-python==4.12.0.88",
    "scipy==1.16.3",
    "matplotlib==3.10.7",
    "facexlib==0.3.0",
    "insightface==0.7.3",
    "piexif==1.1.3",
    "ultralytics==8.3.228",
    "timm==1.0.22",
]

# --- Build hosts and the bake project -------------------------------------------
# sagefleet asks bake (`docker buildx bake --print`, on the control machine, with
# these variables) what the target builds: the image it checks is the target's first
# tag (or image_tag), the requirements go to extra-requirements.txt in the target's
# own context (or requirements_path, relative to the build context).
build_dir = "/opt/sagefleet/build"  # the build context lands here
bake_target = "complete-cuda"
bake_files = ["docker-bake.hcl"]
# Local paths (relative to the project) copied into build_dir; None: services/ +
# docker-bake.hcl of this project. {"dir": PATH}: a whole local bake project.
# Or a git checkout: {"git": URL, "ref": FULL_COMMIT_SHA}.
build_context = None
# Variables the bake files declare (names as in the file; values: one line, no
# whitespace, quotes or shell metacharacters). All of them go into the inputs hash.
bake_variables = {
    "REGISTRY_URL": "ghcr.io/pixeloven",
    "IMAGE_LABEL": "latest",
    "BASE_IMAGE": "nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04",
    "TORCH_VERSION": torch_version,  # must equal torch_version (checked)
    "TORCH_INDEX_URL": torch_index_url,
}
# Where the rendered requirements go, relative to the build context (None: the
# file extra-requirements.txt in the target's own context, as bake reports it).
requirements_path = None
# Which of the target's tags sagefleet checks (None: the first).
image_tag = None
# A registry repository for bake's layer cache (None: the engine's local cache only).
# The build hosts need a builder that can export a cache (Docker's containerd image
# store, or a docker-container builder) and a login to that registry (see Rollout).
bake_cache_ref = None
# Local path on the control machine of a CA bundle for pip inside builds
# (TLS-intercepting proxies). Handed to BuildKit as a secret, never as an argument.
pip_ca_bundle = None
min_free_disk_gb = 40  # under the Docker root dir; the complete image is ~20 GB
force_rebuild = False

# --- Verification gate after a (re)build ----------------------------------------
# The image's versions must equal the pins; each kernel that runs must match torch's
# fp32 SDPA to these bounds (INT8 QK / FP8 PV kernels measure cosine >= 0.9999 and
# rel. L1 <= 0.02 on an H100 — docs/probe.md; the bounds leave room for other GPUs
# and shapes while still catching a broken kernel, which lands far below).
verify_torch = True  # also compare torch's version with torch_version
verify_min_cosine = 0.99
verify_max_rel_l1 = 0.1
probe_quick = True  # 4 shapes per kernel instead of 16
probe_timeout_s = 300  # per kernel (one worker process, replaced if a kernel crashes or hangs)
# Sequence lengths the fleet's workloads use (e.g. [16384, 32760] for video models). The probe
# measures them too and recommends --use-sage-attention only where sageattn beats torch SDPA
# at every one of them ("faster than SDPA from seq >= N", docs/probe.md). []: its median rule.
probe_workload_seq_lens = []

# --- Rollout to GPU nodes (python -m sagefleet.rollout; docs/rollout.md) ------
# Build hosts push the image to the registry of its tag (bake --push); GPU
# nodes pull exactly the pushed digest and (re)start the ComfyUI container.
# Registry credentials: SAGEFLEET_REGISTRY_USER + SAGEFLEET_REGISTRY_PASSWORD_FILE
# (or SAGEFLEET_REGISTRY_PASSWORD) in the control machine's environment, or this
# path on the control machine of a docker config.json. Never put them here.
registry_auth_file = None
state_dir = "/var/lib/sagefleet"  # on each host: previous digest, registry config, probe results
service_name = "comfyui"  # the container's name on GPU nodes
service_port = 8188  # published on the node; the health check asks http://127.0.0.1:<port>/
service_listen = "127.0.0.1"  # the address the port is published on; "0.0.0.0": every interface
service_restart = "unless-stopped"
service_volumes = {  # host path: container path
    "/opt/comfyui/models": "/app/ComfyUI/models",
    "/opt/comfyui/output": "/app/ComfyUI/output",
}
# Mounting system paths (/etc, /root, /home, the Docker socket, build_dir, state_dir)
# into the service is refused unless this is True (docs/security.md).
allow_sensitive_volumes = False
service_cli_args = []  # CLI_ARGS; --use-sage-attention is added where the node's probe says so
health_timeout_s = 60  # the port must answer within this; then no restart and no fallback line
rollout_batch_size = 2  # nodes per batch after the canary group
rollout_canary_group = "canary"  # goes first, alone; an empty or missing group: no canary
verify_on_nodes = True  # probe + verification gate of the pulled image on each node
# How the probe and the service container get the GPU (docs/gpu.md): "auto" = the NVIDIA
# runtime (--gpus all) where the engine has it, else CDI (--device nvidia.com/gpu=all)
# where the engine lists an nvidia.com/gpu spec, else a GPU node is refused;
# "nvidia-runtime" or "cdi" pin one; "none" runs containers without a GPU.
gpu_access = "auto"
service_network = None  # None: the default bridge with -p PORT:PORT; "host": the host's network
# A failed canary or batch: its replaced nodes go back to the digest each ran before.
rollout_auto_rollback = True
