// Test overlay (after drift.hcl): an image that drifted from its pins — the complete
// stage ends by installing the real sageattention 1.0.6 from PyPI over the pinned 2.2.0.
// The verification gate must catch it.
target "complete-cuda" {
  dockerfile-inline = complete_then("pip install --no-input --no-deps --force-reinstall sageattention==1.0.6")
}
