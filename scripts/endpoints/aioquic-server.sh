#!/bin/sh
# aioquic HTTP/3 server (aioquic_server.py) serving QB_WWW as static files.
# Contract: docs/endpoints.md.
set -eu
export QB_WRAPPER="aioquic-server"
# shellcheck source=/dev/null
. "$(dirname "$0")/lib.sh"
qb_need QB_PROTOCOL QB_LISTEN_ADDR QB_PORT QB_CERT QB_KEY QB_WWW QB_OUTPUT_DIR QB_SCRIPTS
qb_protocol h3
qb_cc_map "cubic=cubic newreno=reno" >/dev/null
python=$(qb_program python3 "$QB_SCRIPTS/../target/interop-venv/bin/python3")
"$python" -c "import aioquic" 2>/dev/null || qb_die "$python has no aioquic (install it with scripts/install-endpoints.sh)"
exec "$python" "$(dirname "$0")/aioquic_server.py"
