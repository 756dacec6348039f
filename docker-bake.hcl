// ComfyUI images with SageAttention: runtime-cuda -> core-cuda -> complete-cuda.
// Variables come from the environment (sagefleet passes bake_variables per host;
// its org.sagefleet.inputs label goes on through --set, not through this file).

variable "REGISTRY_URL" {
  default = "ghcr.io/pixeloven"
}

variable "IMAGE_LABEL" {
  default = "latest"
}

variable "BASE_IMAGE" {
  default = "nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04"
}

variable "TORCH_VERSION" {
  default = "2.9.0"
}

variable "TORCH_INDEX_URL" {
  default = "https://download.pytorch.org/whl/cu129"
}

// Path (on the machine that runs bake) of a CA bundle for pip; empty: none.
variable "PIP_CA_BUNDLE" {
  default = ""
}

function "image" {
  params = [name]
  result = "${REGISTRY_URL}/comfyui-docker/${name}:${IMAGE_LABEL}"
}

target "_common" {
  platforms = ["linux/amd64"]
  secret    = PIP_CA_BUNDLE != "" ? ["id=pip_ca,src=${PIP_CA_BUNDLE}"] : []
  labels = {
    "org.opencontainers.image.source" = "https://github.com/pixeloven/ComfyUI-Docker"
  }
}

target "runtime-cuda" {
  inherits   = ["_common"]
  context    = "services/runtime"
  dockerfile = "Dockerfile"
  args = {
    BASE_IMAGE = BASE_IMAGE
  }
  tags = [image("runtime-cuda")]
}

target "core-cuda" {
  inherits   = ["_common"]
  context    = "services/comfy/core"
  dockerfile = "Dockerfile"
  contexts = {
    runtime = "target:runtime-cuda"
  }
  args = {
    TORCH_VERSION   = TORCH_VERSION
    TORCH_INDEX_URL = TORCH_INDEX_URL
  }
  tags = [image("core-cuda")]
}

target "complete-cuda" {
  inherits   = ["_common"]
  context    = "services/comfy/complete"
  dockerfile = "Dockerfile"
  contexts = {
    core = "target:core-cuda"
  }
  tags = [image("complete-cuda")]
}

group "default" {
  targets = ["complete-cuda"]
}

group "cuda" {
  targets = ["runtime-cuda", "core-cuda", "complete-cuda"]
}
