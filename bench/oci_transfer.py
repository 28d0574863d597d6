#!/usr/bin/env python3
"""OCI transfer benchmark: moat's container registry plane against distribution, same machine, same run.

Builds one single-layer image (default 1 GiB, one uncompressed tar layer of pseudo-random bytes)
as an OCI layout directory, then, against moat (`moat serve`, path-form repository
`<acr>/bench/big`, docs/OCI.md) and against the CNCF distribution registry 2.8.2 (filesystem
storage, no auth), measures:

  - skopeo push (`oci:` -> `docker://`) and pull (`docker://` -> `oci:`), end to end, layer
    bytes / wall time; `--preserve-digests` (and `--dest-oci-accept-uncompressed-layers` on
    pull) so the layer crosses uncompressed: without them skopeo gzips it on push (even with
    `--dest-compress=false`, which only affects `dir:`) and again into the `oci:` directory on
    pull, which measures gzip. The pulled layer is re-hashed and compared;
  - a monolithic HTTP upload of a distinct blob of the same size (`POST /blobs/uploads/`, then
    `PUT <location>?digest=` with the whole file streamed by `curl -T`), POST + PUT timed;
  - an HTTP GET of that blob by curl to /dev/null (then checked by a second, untimed GET hashed
    with sha256);
  - moat's peak RSS growth (VmHWM at the end against VmRSS before the first transfer).

Each run starts each peer afresh (new data directory, new port), so no blob is already there and
skopeo's blob-info cache (which it keeps in /var/lib/containers/cache when run as root) cannot
turn a push into a mount. Before each timed transfer, earlier writes are flushed (`sync`) and,
in the 'recycled' memory condition, a scratch file twice the size is written and deleted (see
`--help` and docs/BENCHMARKS.md for why). With `--runs N` the tables show medians. Prints
markdown tables for docs/BENCHMARKS.md.

The skopeo rows are end to end and bound by skopeo itself (it hashes every byte with Go's
sha256 and fsyncs what it pulls): each run also times `skopeo copy` from the OCI layout to
another OCI layout, with no server at all, and prints that as skopeo's own ceiling. The HTTP
rows are what the server does.

    python3 bench/oci_transfer.py [--size-mib 1024] [--runs 1] [--only moat|distribution]
                                  [--memory as-found|recycled|both] [--moat target/release/moat]
                                  [--keep]

Needs: `cargo build --release`, skopeo (1.9.3), curl, and distribution as `docker-registry`
(Debian's docker-registry 2.8.2). Everything listens on 127.0.0.1 only.
"""
import argparse
import hashlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse

from benchlib import MEMORY_CONDITIONS, MEMORY_HELP, free_port, print_header, rss_kib, settle, version, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
CHUNK = 64 * 1024 * 1024
USER = "00000000-0000-0000-0000-000000000000"
ROWS = [("push", "skopeo push", 3.0), ("pull", "skopeo pull", 1.0),
        ("put", "HTTP monolithic upload (POST + PUT, curl -T)", 3.0),
        ("get", "HTTP GET (curl to /dev/null)", 1.0)]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(CHUNK):
            h.update(b)
    return "sha256:" + h.hexdigest()


def make_inputs(tmpdir, size):
    """An OCI layout (one tar layer of exactly `size` bytes, config, manifest, tag `1`) and a raw
    blob of the same size with other bytes. shake_128 output (~250 MB/s here, randbytes ~150)."""
    layout, raw = os.path.join(tmpdir, "image"), os.path.join(tmpdir, "raw.bin")
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs)
    data_len = size - 3 * 512  # tar header + data + two zero records = size (size is whole MiB)
    headers = []
    for name in ("weights.bin", "raw.bin"):
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime = data_len, 0o644, 0
        headers.append(ti.tobuf(format=tarfile.USTAR_FORMAT))
    hashes = [hashlib.sha256(headers[0]), hashlib.sha256(headers[1])]
    layer_tmp = os.path.join(blobs, "layer.tmp")
    with open(layer_tmp, "wb") as fl, open(raw, "wb") as fr:
        for f, h, hdr in zip((fl, fr), hashes, headers):
            f.write(hdr)
        done, i = 0, 0
        while done < data_len:
            b = hashlib.shake_128(b"moat-oci-bench-%d" % i).digest(min(CHUNK, data_len - done))
            for f, h in zip((fl, fr), hashes):
                f.write(b)
                h.update(b)
            done, i = done + len(b), i + 1
        for f, h in zip((fl, fr), hashes):
            f.write(b"\0" * 1024)
            h.update(b"\0" * 1024)
    layer_digest, raw_digest = ("sha256:" + h.hexdigest() for h in hashes)
    os.rename(layer_tmp, os.path.join(blobs, layer_digest[7:]))

    def put(body):
        d = "sha256:" + hashlib.sha256(body).hexdigest()
        with open(os.path.join(blobs, d[7:]), "wb") as f:
            f.write(body)
        return d

    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": size}],
    }).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "1"}}]}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion": "1.0.0"}')
    return {"layout": layout, "raw": raw, "layer_digest": layer_digest, "raw_digest": raw_digest, "size": size}


def run(cmd, what, env=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    return p.stdout


class Peer:
    """A started registry: host:port, repository prefix, credentials, process."""

    def __init__(self, name, proc, port, log, prefix="", token=None):
        self.name, self.proc, self.port, self.log, self.prefix, self.token = name, proc, port, log, prefix, token
        self.host = f"127.0.0.1:{port}"
        self.base = f"http://{self.host}"

    def auth(self):
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def creds(self, side):
        return [f"--{side}-creds", f"{USER}:{self.token}"] if self.token else []

    def curl_auth(self):
        return [x for k, v in self.auth().items() for x in ("-H", f"{k}: {v}")]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-20:])
        except OSError:
            return ""


def start_distribution(workdir):
    port = free_port()
    cfg = os.path.join(workdir, "config.yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {os.path.join(workdir, 'data')}\n"
                f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n")
    log = os.path.join(workdir, "registry.log")
    with open(log, "w") as out:
        proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=out, stderr=subprocess.STDOUT)
    peer = Peer("distribution", proc, port, log)
    wait_port(port)
    return peer


def start_moat(moat_bin, workdir):
    data, port = os.path.join(workdir, "data"), free_port()
    log = os.path.join(workdir, "moat.log")
    with open(log, "w") as out:
        proc = subprocess.Popen([moat_bin, "serve", "--tls=false", "--data-dir", data, "--listen", f"127.0.0.1:{port}"],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "MOAT_LOG": "warn"})
    peer = Peer("moat", proc, port, log)
    try:
        wait_port(port)
        time.sleep(0.3)
        env = {**os.environ, "MOAT_PROFILE": os.path.join(data, "profile.json")}
        reg_yml = os.path.join(workdir, "reg.yml")
        with open(reg_yml, "w") as f:
            f.write("name: benchreg\nlocation: eastus\n")
        reg = json.loads(run([moat_bin, "registry", "create", "--file", reg_yml], "moat registry create", env))
        acr_id = reg["properties"]["regionDetails"][0]["acrDetails"][0]["systemCreatedAcrAccount"]["armResourceId"]["resourceId"]
        peer.prefix = acr_id.rsplit("/", 1)[1] + "/"
        peer.token = json.loads(run([moat_bin, "account", "get-access-token"], "moat get-access-token", env))["accessToken"]
        # Fail early and clearly if this moat does not serve the OCI plane yet.
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/v2/", headers=peer.auth())
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"GET /v2/ answered {r.status}: this moat does not serve the OCI plane")
    except BaseException:
        peer.stop()
        sys.stderr.write(f"--- last lines of {log}:\n{peer.log_tail()}")
        raise
    return peer


def transfers(peer, inp, workdir, ready):
    """The four timed transfers against one started peer, each after `ready()`; MB/s (1e6
    bytes) of layer/blob bytes."""
    size, out = inp["size"], {}
    image = f"docker://{peer.host}/{peer.prefix}bench/big:1"
    ready()
    t0 = time.perf_counter()
    run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false", *peer.creds("dest"),
         f"oci:{inp['layout']}:1", image], "skopeo push")
    out["push"] = size / (time.perf_counter() - t0) / 1e6

    pulled = os.path.join(workdir, "pulled")
    ready()
    t0 = time.perf_counter()
    run(["skopeo", "copy", "--preserve-digests", "--dest-oci-accept-uncompressed-layers", "--src-tls-verify=false",
         *peer.creds("src"), image, f"oci:{pulled}:1"], "skopeo pull")
    out["pull"] = size / (time.perf_counter() - t0) / 1e6
    with open(os.path.join(pulled, "index.json")) as f:
        mdigest = json.load(f)["manifests"][0]["digest"]
    with open(os.path.join(pulled, "blobs", "sha256", mdigest[7:])) as f:
        layer = json.load(f)["layers"][0]
    got = sha256_file(os.path.join(pulled, "blobs", "sha256", layer["digest"][7:]))
    if (layer["digest"], layer["size"], got) != (inp["layer_digest"], size, inp["layer_digest"]):
        raise RuntimeError(f"{peer.name}: pulled layer {layer} hashes to {got}, pushed {inp['layer_digest']}")
    shutil.rmtree(pulled)

    repo, digest = f"{peer.prefix}bench/raw", inp["raw_digest"]
    ready()
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", peer.port, timeout=60)
    c.request("POST", f"/v2/{repo}/blobs/uploads/", headers={**peer.auth(), "Content-Length": "0"})
    r = c.getresponse()
    r.read()
    c.close()
    if r.status != 202:
        raise RuntimeError(f"{peer.name}: POST upload answered {r.status}")
    loc = urllib.parse.urljoin(peer.base + "/", r.getheader("Location"))
    loc += ("&" if "?" in loc else "?") + "digest=" + urllib.parse.quote(digest, safe="")
    code = run(["curl", "-sS", "-T", inp["raw"], "-H", "Expect:", "-H", "Content-Type: application/octet-stream",
                *peer.curl_auth(), "-o", "/dev/null", "-w", "%{http_code}", loc], "curl PUT")
    out["put"] = size / (time.perf_counter() - t0) / 1e6
    if code != "201":
        raise RuntimeError(f"{peer.name}: PUT upload answered {code}")

    url = f"{peer.base}/v2/{repo}/blobs/{digest}"
    ready()
    t0 = time.perf_counter()
    got = run(["curl", "-sS", *peer.curl_auth(), "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url], "curl GET")
    out["get"] = size / (time.perf_counter() - t0) / 1e6
    if got != f"200 {size}":
        raise RuntimeError(f"{peer.name}: GET answered {got!r}, expected '200 {size}'")
    c = http.client.HTTPConnection("127.0.0.1", peer.port, timeout=60)
    c.request("GET", f"/v2/{repo}/blobs/{digest}", headers=peer.auth())
    r, h = c.getresponse(), hashlib.sha256()
    while b := r.read(8 * 1024 * 1024):
        h.update(b)
    c.close()
    if "sha256:" + h.hexdigest() != digest:
        raise RuntimeError(f"{peer.name}: GET returned other bytes than were uploaded")
    return out


def skopeo_alone(inp, workdir, ready):
    """skopeo's own ceiling: the image copied from its OCI layout to another, no server."""
    out = os.path.join(workdir, "alone")
    ready()
    t0 = time.perf_counter()
    run(["skopeo", "copy", "--preserve-digests", "--dest-oci-accept-uncompressed-layers", f"oci:{inp['layout']}:1",
         f"oci:{out}:1"], "skopeo copy (no server)")
    mbs = inp["size"] / (time.perf_counter() - t0) / 1e6
    shutil.rmtree(out)
    return mbs


def ready_for(cond, size, scratch):
    return lambda: settle(scratch, 2 * size if cond == "recycled" else 0)


def one_run(name, args, inp, tmpdir, n, cond):
    workdir = os.path.join(tmpdir, f"{name}-{cond}-{n}")
    os.makedirs(workdir)
    peer = start_moat(args.moat, workdir) if name == "moat" else start_distribution(workdir)
    try:
        base = rss_kib(peer.proc.pid, "VmRSS:")
        res = transfers(peer, inp, workdir, ready_for(cond, inp["size"], tmpdir))
        res["rss"] = (rss_kib(peer.proc.pid, "VmHWM:") - base) / 1024
        return res
    except BaseException:
        sys.stderr.write(f"--- last lines of {peer.log}:\n{peer.log_tail()}")
        raise
    finally:
        peer.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--only", choices=["moat", "distribution"])
    ap.add_argument("--moat", default=os.path.join(HERE, "..", "target", "release", "moat"))
    ap.add_argument("--memory", choices=[*MEMORY_CONDITIONS, "both"], default="both", help=MEMORY_HELP)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    a.moat = os.path.abspath(a.moat)
    if a.size_mib < 1 or a.runs < 1:
        ap.error("--size-mib and --runs must be at least 1")
    peers = [a.only] if a.only else ["moat", "distribution"]
    size = a.size_mib * 1024 * 1024
    tmpdir = tempfile.mkdtemp(prefix="moat-oci-bench-")
    conds = MEMORY_CONDITIONS if a.memory == "both" else (a.memory,)
    results = {(c, p): [] for c in conds for p in peers}
    alone = {c: [] for c in conds}
    try:
        inp = make_inputs(tmpdir, size)
        for n in range(a.runs):
            for c in (conds if n % 2 == 0 else conds[::-1]):
                alone[c].append(skopeo_alone(inp, tmpdir, ready_for(c, size, tmpdir)))
                print(f"run {n + 1}/{a.runs} {c}: skopeo alone {alone[c][-1]:.0f} MB/s", file=sys.stderr)
                for p in (peers if n % 2 == 0 else peers[::-1]):  # alternate who goes first
                    results[c, p].append(one_run(p, a, inp, tmpdir, n, c))
                    print(f"run {n + 1}/{a.runs} {c} {p}: " + ", ".join(f"{k} {v:.0f}" for k, v in results[c, p][-1].items()
                                                                         if k != "rss") + " MB/s", file=sys.stderr)
    finally:
        if a.keep:
            print(f"kept {tmpdir}", file=sys.stderr)
        else:
            shutil.rmtree(tmpdir, ignore_errors=True)

    print_header("oci_transfer.py", f"{version(['skopeo', '--version'])}; {version(['docker-registry', '--version'])}; "
                 f"{version(['curl', '--version'])[:11]}")
    med_note = f", median of {a.runs} runs" if a.runs > 1 else ""
    verdicts = []
    for c in conds:
        med = {p: {k: statistics.median(r[k] for r in results[c, p]) for k, _, _ in ROWS} for p in peers}
        print(f"\nMemory {c}:\n")
        print(f"| {a.size_mib} MiB single-layer image / blob{med_note} | moat MB/s | distribution MB/s | moat / distribution | target |")
        print("|---|---|---|---|---|")
        for key, label, target in ROWS:
            m, d = med.get("moat", {}).get(key), med.get("distribution", {}).get(key)
            ratio = f"{m / d:.2f}x" if m and d else "–"
            verdict = ("met" if m / d >= target else "NOT met") if m and d else "–"
            verdicts.append(f"{label} ({c}): ≥ {target:g}x {verdict}")
            print(f"| {label} | {f'{m:.0f}' if m else '–'} | {f'{d:.0f}' if d else '–'} | {ratio} | ≥ {target:g}x: {verdict} |")
        print(f"\nskopeo alone (`skopeo copy` OCI layout to OCI layout, no server), the ceiling of both skopeo rows: "
              f"{statistics.median(alone[c]):.0f} MB/s{' (median)' if a.runs > 1 else ''}.")
    moat_runs = [r for c in conds for r in results.get((c, "moat"), [])]
    if moat_runs:
        peak = max(r["rss"] for r in moat_runs)
        print(f"\nmoat peak RSS growth during a run ({5 * a.size_mib} MiB moved through the server: push, pull, "
              f"upload, GET, verifying GET): {peak:.0f} MiB{' (largest of the runs)' if len(moat_runs) > 1 else ''}.")
    if len(peers) == 2:
        print("\nTargets (upload ≥ 3x distribution, download ≥ 1x): " + "; ".join(verdicts) + ".")


if __name__ == "__main__":
    sys.exit(main())
