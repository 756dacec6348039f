// Offline overlay: `docker buildx bake -f docker-bake.hcl -f tests/offline/offline.hcl`.
// No registry, GitHub or CUDA index can be reached in CI or in the offline demo,
// so the core stage is swapped for a local stand-in (a venv and a stand-in
// ComfyUI HTTP server, no torch). runtime-cuda and complete-cuda are the real ones.

target "core-cuda" {
  context    = "tests/offline/core"
  dockerfile = "Dockerfile"
}
