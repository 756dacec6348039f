// Test overlay (after drift.hcl): an image without sageattn3 (removed after the
// requirements), for a host whose group requires it. The verification gate must catch it.
target "complete-cuda" {
  dockerfile-inline = complete_then("pip uninstall -y sageattn3")
}
