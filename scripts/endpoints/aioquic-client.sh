#!/bin/sh
# aioquic HTTP/3 client (aioquic_client.py). Contract: docs/endpoints.md.
set -eu
export QB_WRAPPER="aioquic-client"
# shellcheck source=/dev/null
. "$(dirname "$0")/lib.sh"
qb_need QB_PROTOCOL QB_SERVER_ADDR QB_SERVER_PORT QB_SERVER_NAME QB_CA QB_REQUESTS QB_DOWNLOADS QB_OUTPUT_DIR QB_SCRIPTS
qb_protocol h3
qb_cc_map "cubic=cubic newreno=reno" >/dev/null
python=$(qb_program python3 "$QB_SCRIPTS/../target/interop-venv/bin/python3")
"$python" -c "import aioquic" 2>/dev/null || qb_die "$python has no aioquic (install it with scripts/install-endpoints.sh)"
exec "$python" "$(dirname "$0")/aioquic_client.py"
