// Test overlay: an image that drifted from its pins — the complete stage ends by
// installing the real sageattention 1.0.6 from PyPI over the pinned 2.2.0.
// The verification gate must catch it.
target "complete-cuda" {
  dockerfile-inline = <<EOT
FROM core
COPY extra-requirements.txt /app/extra-requirements.txt
RUN --mount=type=secret,id=pip_ca,required=false \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi && \
    pip install --no-input -r /app/extra-requirements.txt && \
    pip install --no-input --no-deps --force-reinstall sageattention==1.0.6
EOT
}
