#!/bin/sh
# Headless Chromium as an HTTP/3 client (chromium_client.py drives it over
# the DevTools pipe). Contract: docs/endpoints.md.
set -eu
export QB_WRAPPER="chromium-client"
# shellcheck source=/dev/null
. "$(dirname "$0")/lib.sh"
qb_need QB_PROTOCOL QB_SERVER_ADDR QB_SERVER_PORT QB_SERVER_NAME QB_CA QB_REQUESTS QB_DOWNLOADS QB_OUTPUT_DIR
qb_protocol h3
qb_cc_map "cubic=cubic" >/dev/null
qb_program chromium /usr/lib/chromium/chromium /usr/bin/chromium >/dev/null
qb_program certutil /usr/bin/certutil >/dev/null
python=$(qb_program python3 /usr/bin/python3)
exec "$python" "$(dirname "$0")/chromium_client.py"
