#!/usr/bin/env python3
"""What network isolation costs a small GET.

Starts moat (release build) on 127.0.0.1, creates a registry with a component version, a
loopback virtual network and an approved private endpoint to the registry, then issues the same
small GET (one component version, about 1 KiB of JSON) many times: through the public listener
(admission: public access Enabled) and through the private endpoint from inside the network
(admission: approved endpoint, peer in its address space). Reports the server-side latency that
moat logs for each request (`micros`), p50 and p99, next to the cost of one admission decision
measured by `cargo bench -p moat-policy --bench admission` (pass it with --decision-ns).

    python3 bench/isolation_overhead.py [--moat target/release/moat] [--requests 3000] [--decision-ns 218]

Everything listens on 127.0.0.1 / 127.x only; the loop is bounded by --requests.
"""
import argparse
import datetime
import http.client
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
import urllib.parse


def call(conn, method, path, token, body=None):
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    sep = "&" if "?" in path else "?"
    conn.request(method, f"{path}{sep}api-version=2025-09-01", body=data, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    return resp.status, (json.loads(raw) if raw else None)


def connect(url, source=None):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, source_address=(source, 0) if source else None)


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moat", default="target/release/moat")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--decision-ns", type=float, default=None, help="median ns of one admission decision (criterion)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    data = os.path.join(tmp, "data")
    log = open(os.path.join(tmp, "serve.log"), "w")
    env = dict(os.environ, MOAT_LOG="info")
    proc = subprocess.Popen([a.moat, "serve", "--tls=false", "--listen", "127.0.0.1:0", "--data-dir", data], stdout=subprocess.PIPE, stderr=log, env=env, text=True)
    try:
        url = None
        for line in proc.stdout:
            if line.startswith("moat listening on "):
                url = line.split()[-1]
                break
        prof = json.load(open(os.path.join(data, "profile.json")))
        conn = connect(url)
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": prof["clientId"], "client_secret": prof["clientSecret"]})
        conn.request("POST", f"/{prof['tenantId']}/oauth2/v2.0/token", body=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
        token = json.loads(conn.getresponse().read())["access_token"]
        sub = f"/subscriptions/{prof['subscriptionId']}"
        reg = f"{sub}/resourceGroups/default/providers/Microsoft.MachineLearningServices/registries/benchreg"
        assert call(conn, "PUT", reg, token, {"location": "eastus", "properties": {}})[0] == 201
        spec = {"name": "train", "type": "command", "command": "python train.py", "inputs": {f"in{i}": {"type": "uri_folder"} for i in range(8)}}
        assert call(conn, "PUT", f"{reg}/components/train/versions/1", token, {"properties": {"componentSpec": spec}})[0] == 201
        net = f"{sub}/resourceGroups/default/providers/Microsoft.Network"
        vnet = {"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": ["127.88.0.0/16"]},
                "subnets": [{"name": "s1", "properties": {"addressPrefix": "127.88.1.0/24"}}]}}
        assert call(conn, "PUT", f"{net}/virtualNetworks/benchnet", token, vnet)[0] == 201
        pe = {"properties": {"subnet": {"id": f"{net}/virtualNetworks/benchnet/subnets/s1"},
              "privateLinkServiceConnections": [{"name": "c", "properties": {"privateLinkServiceId": reg, "groupIds": ["amlregistry"]}}]}}
        assert call(conn, "PUT", f"{net}/privateEndpoints/benchpe", token, pe)[0] == 201
        pe_url = None
        for _ in range(100):
            pe_url = call(conn, "GET", f"{net}/privateEndpoints/benchpe", token)[1]["properties"].get("serviceUrl")
            if pe_url:
                break
            time.sleep(0.02)
        path = f"{reg}/components/train/versions/1"
        results = {}
        for name, c in [("public listener", connect(url)), ("private endpoint", connect(pe_url, "127.88.1.50"))]:
            for _ in range(200):  # warm-up
                assert call(c, "GET", path, token)[0] == 200
            log.flush()
            before = os.path.getsize(log.name)
            t0 = time.time()
            for _ in range(a.requests):
                status, _ = call(c, "GET", path, token)
                assert status == 200
            wall = time.time() - t0
            time.sleep(0.3)
            with open(log.name) as f:
                f.seek(before)
                micros = [int(m) for m in re.findall(r"path=\S*/components/train/versions/1 status=200 micros=(\d+)", re.sub(r"\x1b\[[0-9;]*m", "", f.read()))]
            results[name] = (micros, wall)
        size = len(json.dumps(call(conn, "GET", path, token)[1]))
    finally:
        proc.terminate()
        proc.wait()
    print(f"## Isolation overhead on a small GET ({datetime.date.today()})\n")
    print(f"GET one component version ({size} bytes of JSON), {a.requests} sequential requests on one keep-alive connection each way;")
    print("server-side latency as moat logs it per request (authentication, admission, authorization, audit, store read, rendering).\n")
    print("| path | requests logged | p50 | p99 | client-side req/s |")
    print("|---|---|---|---|---|")
    for name, (micros, wall) in results.items():
        print(f"| {name} | {len(micros)} | {statistics.median(micros):.0f} µs | {percentile(micros, 0.99):.0f} µs | {a.requests / wall:.0f} |")
    if a.decision_ns:
        p50 = min(statistics.median(m) for m, _ in results.values())
        print(f"\nOne admission decision (criterion, 10,000 endpoints, 10,000 IP rules): {a.decision_ns:.0f} ns = "
              f"{100 * a.decision_ns / 1000 / p50:.3f} % of the fastest p50 above.")


if __name__ == "__main__":
    main()
