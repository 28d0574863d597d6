#!/usr/bin/env bash
# Runs moat's whole test suite: formatting, lints, and every test (unit, store suite,
# end-to-end tests against the real `moat` binary over real sockets).
# Installs what the tests drive when it is missing: curl, iproute2, dig and skopeo (apt, as
# root; the namespace-mode isolation tests need root and `ip`; the DNS tests query with dig; the
# container registry tests push and pull with skopeo; the store suite also runs on PostgreSQL,
# which this script starts on a free loopback port and stops) and the azure-storage-blob and azure-ai-ml SDKs (pip).
# The byte store's suite also runs on Azure Blob Storage and S3: this script starts Azurite
# (npm, pinned) and moto server (pip, pinned) on free loopback ports, and stops them.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v dig >/dev/null 2>&1 || need_apt+=(bind9-dnsutils)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v skopeo >/dev/null 2>&1 || need_apt+=(skopeo)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need_apt[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "missing tools: ${need_apt[*]} (install them, or run as root so that this script can)" >&2
    exit 1
  fi
fi

# The blob plane is tested with the real Azure SDK for Python, and the registry data plane
# with the real azure-ai-ml SDK, both pinned.
if ! python3 -c 'import azure.storage.blob' >/dev/null 2>&1; then
  echo "installing azure-storage-blob==12.31.1"
  python3 -m pip install -q --disable-pip-version-check azure-storage-blob==12.31.1
fi
if ! python3 -c 'import azure.ai.ml, sys; sys.exit(azure.ai.ml.__version__ != "1.35.2")' >/dev/null 2>&1; then
  echo "installing azure-ai-ml==1.35.2"
  python3 -m pip install -q --disable-pip-version-check azure-ai-ml==1.35.2 azure-storage-blob==12.31.1
fi

# shellcheck source=scripts/postgres-for-tests.sh
. scripts/postgres-for-tests.sh
# shellcheck source=scripts/object-stores-for-tests.sh
. scripts/object-stores-for-tests.sh
trap 'stop_test_postgres; stop_test_object_stores' EXIT
start_test_postgres || true
start_test_azurite || true
start_test_s3 || true

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
