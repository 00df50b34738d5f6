#!/usr/bin/env bash
# schemathesis (PyPI) against a live one-node cluster with docs/openapi.json: every operation
# of the contract, every check (no 5xx, every status, content type, header and body as
# documented, bad input refused, good input accepted). The membership routes are left out:
# a generated call to them would change or break the cluster under test.
#
#   bash .ci/schemathesis.sh [path/to/licd]     (default: target/debug/licd)
set -euo pipefail
cd "$(dirname "$0")/.."
licd=${1:-target/debug/licd}
version=4.32.5
venv=target/schemathesis-venv
if [ ! -x "$venv/bin/schemathesis" ] || ! "$venv/bin/schemathesis" --version | grep -q "$version"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

work=$(mktemp -d)
node_pid=
cleanup() {
  if [ -n "$node_pid" ]; then
    kill "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
endpoint=127.0.0.1:$port
export LICD_ADMIN_TOKEN=schemathesis-admin-token-0123456789abcdef
export LICD_CLUSTER_SECRET=schemathesis-cluster-secret-0123456789abcdef

"$licd" --json license keygen --out "$work/vendor.key" > "$work/key.json"
public_key=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["public_key"])' "$work/key.json")
"$licd" serve --node-id 1 --listen "$endpoint" --data-dir "$work/data" \
  --trusted-key "$public_key" > "$work/node.log" 2>&1 &
node_pid=$!
for _ in $(seq 1 100); do
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
    "http://$endpoint/healthz" 2>/dev/null && break
  sleep 0.1
done
"$licd" cluster init --endpoints "$endpoint" --member "1=$endpoint" > /dev/null
"$licd" license issue --key "$work/vendor.key" --id demo --customer Demo --max-cores 64 \
  --mac 02:00:00:00:00:01 --mac 02:00:00:00:00:02 --out "$work/demo.lic" > /dev/null
"$licd" license install "$work/demo.lic" --endpoints "$endpoint" > /dev/null

status=0
"$venv/bin/schemathesis" --config-file .ci/schemathesis.toml run "http://$endpoint/openapi.json" \
  --header "Authorization: Bearer $LICD_ADMIN_TOKEN" \
  --checks all \
  --workers 1 \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-100}" \
  --seed 1 \
  --generation-database none \
  --request-timeout 20 \
  --exclude-path-regex '^/admin/(init|elect|learners|voters|members)' \
  --no-color \
  --report junit --report-dir target/schemathesis || status=$?
if [ "$status" -ne 0 ]; then
  echo "schemathesis failed ($status); the node's log:" >&2
  tail -n 50 "$work/node.log" >&2
fi
exit "$status"
