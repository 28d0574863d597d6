#!/usr/bin/env bash
# The story of a private registry, on one machine, with no privileges: create a registry,
# upload a model, close the registry to the public network, see the clear denial, create a
# virtual network with private endpoints, upload and download from inside, read the audit log.
#
# Usage: examples/private-registry.sh            (uses `moat` from PATH, else target/debug/moat)
#        MOAT=/path/to/moat examples/private-registry.sh
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
MOAT="${MOAT:-$(command -v moat || echo "$here/target/debug/moat")}"
[ -x "$MOAT" ] || { echo "moat not found: build it with 'cargo build' or set MOAT" >&2; exit 2; }
work="$(mktemp -d)"
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ moat %s\n' "$*"; "$MOAT" --profile "$work/data/profile.json" "$@"; }
expect_fail() {
  printf '$ moat %s\n' "$*"
  if "$MOAT" --profile "$work/data/profile.json" "$@" >"$work/stdout" 2>"$work/err"; then
    echo "expected a denial, but it succeeded" >&2; exit 1
  fi
  cat "$work/err"
}
export MOAT_STATE_DIR="$work/state"

step "Start moat on a fresh data directory (loopback, embedded defaults)"
"$MOAT" serve --listen 127.0.0.1:0 --dns-listen 127.0.0.1:0 --data-dir "$work/data" >"$work/serve.out" 2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 300); do
  grep -q "ready in" "$work/serve.out" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { echo "moat serve stopped:" >&2; cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
grep -q "ready in" "$work/serve.out" || { echo "moat serve is not ready after 30 s:" >&2; cat "$work/serve.log" >&2; exit 1; }
head -1 "$work/serve.out"
dns_port="$(sed -n 's/^  dns: 127.0.0.1:\([0-9]*\) .*/\1/p' "$work/serve.out")"
sub="$(run account show | sed -n 's/.*"id": "\([0-9a-f-]*\)".*/\1/p' | head -1)"

step "Create a registry and publish a model (public network access: Enabled)"
printf 'name: private-demo\nlocation: eastus\n' >"$work/registry.yml"
run registry create --file "$work/registry.yml" --output table
mkdir -p "$work/model"
head -c 3000000 /dev/zero | tr '\0' 'w' >"$work/model/weights.bin"
printf 'flavors: {}\n' >"$work/model/MLmodel"
printf 'name: sentiment\nversion: 1\npath: ./model\ntype: custom_model\n' >"$work/model.yml"
run model create --file "$work/model.yml" --registry-name private-demo --output table

step "Close the registry to the public network"
run registry update --name private-demo --set publicNetworkAccess=Disabled --output table
expect_fail model show --name sentiment --version 1 --registry-name private-demo
grep -q "PublicNetworkAccessDisabled" "$work/err"

step "Create a virtual network (127.77.0.0/16) with private endpoints to the registry and its storage"
run network vnet create --name vnet1 --address-prefixes 127.77.0.0/16 --subnet-name s1 --subnet-prefixes 127.77.1.0/24 --output table
reg_id="/subscriptions/$sub/resourceGroups/default/providers/Microsoft.MachineLearningServices/registries/private-demo"
sa_id="$(run registry show --name private-demo | grep -o '"/subscriptions/[^"]*/storageAccounts/[0-9a-f]*"' | head -1 | tr -d '"')"
run network private-endpoint create --name pe-registry --vnet-name vnet1 --subnet s1 --private-connection-resource-id "$reg_id" --group-id amlregistry --output table
run network private-endpoint create --name pe-blob --vnet-name vnet1 --subnet s1 --private-connection-resource-id "$sa_id" --group-id blob --output table
run registry private-endpoint-connection list --registry-name private-demo --output table

step "Private DNS: the blob zone, linked to vnet1, holding pe-blob's record"
run network private-dns zone create --name privatelink.blob.moat.internal --output table
run network private-dns link vnet create --zone-name privatelink.blob.moat.internal --name vnet1-link --virtual-network vnet1 --output table
run network private-endpoint dns-zone-group create --endpoint-name pe-blob --name default --private-dns-zone privatelink.blob.moat.internal --output table
run network private-dns record-set list --zone-name privatelink.blob.moat.internal --output table
account="${sa_id##*/}"
if command -v dig >/dev/null 2>&1; then
  echo "\$ dig -b 127.77.1.50 $account.blob.moat.internal   (from inside vnet1)"
  dig @127.0.0.1 -p "$dns_port" -b 127.77.1.50 +short "$account.blob.moat.internal" | tee "$work/dig-in"
  echo "\$ dig $account.blob.moat.internal   (from outside)"
  dig @127.0.0.1 -p "$dns_port" +short "$account.blob.moat.internal" | tee "$work/dig-out"
  grep -q '^127\.77\.1\.5$' "$work/dig-in" && grep -q '^127\.0\.0\.1$' "$work/dig-out" && echo "split-horizon answers as expected"
else
  echo "(dig is not installed: skipping the DNS queries)"
fi

step "Which planes can a client in vnet1 reach, and how?"
run --source-address 127.77.1.50 network diagnose --registry-name private-demo --output table

step "From inside the network (source address 127.77.1.50): publish and download"
printf 'name: sentiment\nversion: 2\npath: ./model\ntype: custom_model\n' >"$work/model2.yml"
run --source-address 127.77.1.50 model create --file "$work/model2.yml" --registry-name private-demo --output table
run --source-address 127.77.1.50 model download --name azureml://registries/private-demo/models/sentiment/versions/2 --download-path "$work/out"
cmp "$work/model/weights.bin" "$work/out/sentiment/weights.bin" && echo "downloaded bytes match"

step "From outside the network (source address 127.0.0.1): refused, with the fix in the message"
expect_fail --source-address 127.0.0.1 model download --name sentiment --version 2 --registry-name private-demo --download-path "$work/out2"
grep -q "PublicNetworkAccessDisabled" "$work/err"

step "The audit log: who was refused, where from, by which rule"
run monitor activity-log list --result denied --max-events 5 --output table
echo
echo "done: the registry is reachable only through its private endpoints"
