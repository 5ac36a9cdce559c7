#!/usr/bin/env bash
# schemathesis (PyPI) over the real gpu-server's /openapi.json: bounded examples, a fixed seed,
# the checks that every answer is not a 5xx and matches the documented status codes, content
# types and schemas. Run by scripts/test: tests/clients/schemathesis.sh GPU_SERVER_BIN VENV
set -euo pipefail
bin=$1
venv=$(cd "$2" && pwd)
work=$(mktemp -d)
port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
RATE_LIMIT_PER_MINUTE=0 LOG_LEVEL=warn "$bin" serve --port "$port" \
  --storage-bucket "$work/cache" --customer-storage-bucket "$work/shares" >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
"$venv/bin/python" - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(600):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/ready", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit("gpu-server did not become ready")
PY
cd "$work"
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
  --max-examples 10 --seed 1 \
  -c not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
