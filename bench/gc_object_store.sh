#!/usr/bin/env bash
# Starts Azurite on loopback (scripts/object-stores-for-tests.sh), runs bench/gc_object_store.py
# against it with the given arguments, and stops it.
#   bench/gc_object_store.sh [--unreferenced N] [--referenced M] [--moat target/release/moat]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/object-stores-for-tests.sh
trap stop_test_object_stores EXIT
start_test_azurite >/dev/null
python3 bench/gc_object_store.py "$@"
