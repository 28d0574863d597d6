#!/usr/bin/env bash
# Starts throwaway object stores for the tests on free loopback ports, and stops them. Sourced
# by scripts/test.sh:
#   start_test_azurite   Azurite (the Azure Storage emulator, npm azurite@3.35.0, the last
#                        release that runs on Node 20), telemetry off; creates container
#                        `moat-test`; sets MOAT_TEST_AZURITE (its blob endpoint)
#   start_test_s3        moto server (PyPI moto[server]==5.2.1, in memory); creates bucket
#                        `moat-test`; sets MOAT_TEST_S3 (its endpoint)
#   stop_test_object_stores
# Each prints why it cannot start and returns 1 (the tests that need it then skip, saying so).
# Everything listens on 127.0.0.1 only.

MOAT_TEST_AZURITE_VERSION=3.35.0
MOAT_TEST_MOTO_VERSION=5.2.1

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until 127.0.0.1:$1 accepts connections (up to 30 s).
wait_port() {
  local i
  for i in $(seq 1 300); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

start_test_azurite() {
  local prefix="${MOAT_TEST_TOOLS:-$HOME/.cache/moat-test-tools}/azurite-$MOAT_TEST_AZURITE_VERSION"
  local bin="$prefix/node_modules/.bin/azurite-blob"
  if [ ! -x "$bin" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "npm is not installed: the Azure Blob Storage backend tests will skip" >&2
      return 1
    fi
    echo "installing azurite@$MOAT_TEST_AZURITE_VERSION into $prefix"
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "azurite@$MOAT_TEST_AZURITE_VERSION" >/dev/null \
      || { echo "could not install Azurite: the Azure Blob Storage backend tests will skip" >&2; return 1; }
  fi
  MOAT_TEST_AZURITE_DIR="$(mktemp -d /tmp/moat-test-azurite.XXXXXX)"
  local port
  port="$(free_port)"
  "$bin" --blobHost 127.0.0.1 --blobPort "$port" --location "$MOAT_TEST_AZURITE_DIR" --disableTelemetry \
    --skipApiVersionCheck --loose >"$MOAT_TEST_AZURITE_DIR/azurite.log" 2>&1 &
  MOAT_TEST_AZURITE_PID=$!
  wait_port "$port" || { cat "$MOAT_TEST_AZURITE_DIR/azurite.log" >&2; return 1; }
  export MOAT_TEST_AZURITE="http://127.0.0.1:$port/devstoreaccount1"
  python3 - "$MOAT_TEST_AZURITE" <<'EOF' || return 1
import sys
from azure.storage.blob import BlobServiceClient
key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
BlobServiceClient(sys.argv[1], credential={"account_name": "devstoreaccount1", "account_key": key}).create_container("moat-test")
EOF
  echo "Azurite for the tests: $MOAT_TEST_AZURITE"
}

start_test_s3() {
  if ! command -v moto_server >/dev/null 2>&1; then
    echo "installing moto[server]==$MOAT_TEST_MOTO_VERSION"
    python3 -m pip install -q --disable-pip-version-check "moto[server]==$MOAT_TEST_MOTO_VERSION" \
      || { echo "could not install moto: the S3 backend tests will skip" >&2; return 1; }
  fi
  MOAT_TEST_S3_LOG="$(mktemp /tmp/moat-test-moto.XXXXXX)"
  local port
  port="$(free_port)"
  moto_server -H 127.0.0.1 -p "$port" >"$MOAT_TEST_S3_LOG" 2>&1 &
  MOAT_TEST_S3_PID=$!
  wait_port "$port" || { cat "$MOAT_TEST_S3_LOG" >&2; return 1; }
  export MOAT_TEST_S3="http://127.0.0.1:$port"
  # moto checks no credentials; a plain PUT creates the bucket.
  curl -fsS -X PUT "$MOAT_TEST_S3/moat-test" >/dev/null || return 1
  echo "moto S3 for the tests: $MOAT_TEST_S3"
}

stop_test_object_stores() {
  if [ -n "${MOAT_TEST_AZURITE_PID:-}" ]; then
    kill "$MOAT_TEST_AZURITE_PID" 2>/dev/null || true
    wait "$MOAT_TEST_AZURITE_PID" 2>/dev/null || true
    rm -rf "$MOAT_TEST_AZURITE_DIR"
    unset MOAT_TEST_AZURITE_PID
  fi
  if [ -n "${MOAT_TEST_S3_PID:-}" ]; then
    kill "$MOAT_TEST_S3_PID" 2>/dev/null || true
    wait "$MOAT_TEST_S3_PID" 2>/dev/null || true
    rm -f "$MOAT_TEST_S3_LOG"
    unset MOAT_TEST_S3_PID
  fi
}
