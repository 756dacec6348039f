// For the test overlays drift-*.hcl (given after it): the complete stage as the offline
// profile builds it (the pinned requirements), then one more shell step that makes the
// image drift from its pins.
function "complete_then" {
  params = [step]
  result = <<EOT
FROM core
COPY extra-requirements.txt /app/extra-requirements.txt
RUN --mount=type=secret,id=pip_ca,required=false \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi && \
    pip install --no-input -r /app/extra-requirements.txt && \
    ${step}
EOT
}
