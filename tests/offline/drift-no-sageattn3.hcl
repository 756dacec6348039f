// Test overlay: an image without sageattn3 (removed after the requirements), for a
// host whose group requires it. The verification gate must catch it.
target "complete-cuda" {
  dockerfile-inline = <<EOT
FROM core
COPY extra-requirements.txt /app/extra-requirements.txt
RUN --mount=type=secret,id=pip_ca,required=false \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi && \
    pip install --no-input -r /app/extra-requirements.txt && \
    pip uninstall -y sageattn3
EOT
}
