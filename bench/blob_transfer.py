#!/usr/bin/env python3
"""Blob transfer benchmark: moat against Azurite, same machine, same run, same SDK, same file.

Uploads and downloads one file (default 1 GiB) with the azure-storage-blob SDK (8 MiB blocks,
4 in parallel) through moat's blob plane (a SAS from ListServiceSas) and through Azurite
(the Azure storage emulator from npm, on-disk persistence), and reports MB/s, the ratio, and
moat's peak RSS growth. Prints a markdown table for docs/BENCHMARKS.md.

    python3 bench/blob_transfer.py [--size-mib 1024] [--moat target/release/moat]

Needs: `cargo build --release`, `pip install azure-storage-blob==12.31.1`, and Azurite 3.35.0
(installed into bench/.azurite with npm when missing). Everything listens on 127.0.0.1 only.
"""
import argparse
import datetime
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from azure.storage.blob import BlobClient, BlobServiceClient

from benchlib import free_port, rss_kib, wait_port

AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HERE = os.path.dirname(os.path.abspath(__file__))


def make_file(path, size):
    rng = random.Random(20261126)
    h = hashlib.sha256()
    chunk = 64 * 1024 * 1024
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(chunk, left)
            b = rng.randbytes(n)
            h.update(b)
            f.write(b)
            left -= n
    return h.hexdigest()


def transfer(make_client, path, size, digest, tmpdir):
    client = make_client()
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        client.upload_blob(f, length=size, overwrite=True, max_concurrency=4)
    up = time.perf_counter() - t0
    out = os.path.join(tmpdir, "download.bin")
    t0 = time.perf_counter()
    h = hashlib.sha256()
    with open(out, "wb") as f:
        client.download_blob(max_concurrency=4).readinto(f)
    down = time.perf_counter() - t0
    with open(out, "rb") as f:
        while True:
            b = f.read(64 * 1024 * 1024)
            if not b:
                break
            h.update(b)
    os.remove(out)
    assert h.hexdigest() == digest, "downloaded bytes differ"
    return size / up / 1e6, size / down / 1e6


def moat_run(moat_bin, path, size, digest, tmpdir):
    data = os.path.join(tmpdir, "moat-data")
    port = free_port()
    proc = subprocess.Popen([moat_bin, "serve", "--tls=false", "--data-dir", data, "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "MOAT_LOG": "warn"})
    try:
        wait_port(port)
        time.sleep(0.3)
        profile = json.load(open(os.path.join(data, "profile.json")))
        env = {**os.environ, "MOAT_PROFILE": os.path.join(data, "profile.json")}
        reg_yml = os.path.join(tmpdir, "r.yml")
        open(reg_yml, "w").write("name: benchreg\nlocation: eastus\n")
        reg = json.loads(subprocess.check_output([moat_bin, "registry", "create", "--file", reg_yml], env=env))
        sa_id = reg["properties"]["regionDetails"][0]["storageAccountDetails"][0]["systemCreatedStorageAccount"]["armResourceId"]["resourceId"]
        account = sa_id.rsplit("/", 1)[1]
        token = json.loads(subprocess.check_output([moat_bin, "account", "get-access-token"], env=env))["accessToken"]
        expiry = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        req = urllib.request.Request(
            f"{profile['endpoint']}{sa_id}/ListServiceSas?api-version=2025-09-01",
            data=json.dumps({"canonicalizedResource": f"/blob/{account}/bench", "signedResource": "c",
                             "signedPermission": "racwdl", "signedExpiry": expiry}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, method="POST")
        sas = json.load(urllib.request.urlopen(req))["serviceSasToken"]
        base_rss = rss_kib(proc.pid, "VmRSS:")
        url = f"{profile['endpoint']}/{account}/bench/big.bin?{sas}"
        up, down = transfer(lambda: BlobClient.from_blob_url(url, max_block_size=8 * 1024 * 1024,
                                                             max_single_put_size=8 * 1024 * 1024,
                                                             max_chunk_get_size=8 * 1024 * 1024),
                            path, size, digest, tmpdir)
        # The same file through the CLI: `moat model create` (startPendingUpload, blocks, commit)
        # and `moat model download` (ranges, sha256-verified), each timed end to end.
        model = os.path.join(tmpdir, "model")
        os.makedirs(model, exist_ok=True)
        os.link(path, os.path.join(model, "weights.bin"))
        yml = os.path.join(tmpdir, "model.yml")
        open(yml, "w").write("name: big\nversion: 1\npath: ./model\n")
        cli_env = {**env, "MOAT_STATE_DIR": os.path.join(tmpdir, "state")}
        t0 = time.perf_counter()
        subprocess.check_call([moat_bin, "model", "create", "--file", yml, "--registry-name", "benchreg"], env=cli_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cli_up = size / (time.perf_counter() - t0) / 1e6
        out = os.path.join(tmpdir, "cli-out")
        t0 = time.perf_counter()
        subprocess.check_call([moat_bin, "model", "download", "--name", "big", "--version", "1", "--registry-name", "benchreg",
                               "--download-path", out], env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cli_down = size / (time.perf_counter() - t0) / 1e6
        shutil.rmtree(out, ignore_errors=True)
        peak = rss_kib(proc.pid, "VmHWM:")
        return up, down, cli_up, cli_down, (peak - base_rss) / 1024
    finally:
        proc.terminate()
        proc.wait()


def azurite_run(path, size, digest, tmpdir):
    binary = os.path.join(HERE, ".azurite", "node_modules", ".bin", "azurite-blob")
    if not os.path.exists(binary):
        subprocess.check_call(["npm", "install", "--prefix", os.path.join(HERE, ".azurite"), "--no-audit", "--no-fund",
                               "azurite@3.35.0"], stdout=subprocess.DEVNULL)
    port = free_port()
    loc = os.path.join(tmpdir, "azurite")
    proc = subprocess.Popen([binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", loc,
                             "--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        conn = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
        svc = BlobServiceClient.from_connection_string(conn, max_block_size=8 * 1024 * 1024,
                                                       max_single_put_size=8 * 1024 * 1024,
                                                       max_chunk_get_size=8 * 1024 * 1024)
        svc.create_container("bench")
        up, down = transfer(lambda: svc.get_blob_client("bench", "big.bin"), path, size, digest, tmpdir)
        return up, down
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--moat", default=os.path.join(HERE, "..", "target", "release", "moat"))
    a = ap.parse_args()
    size = a.size_mib * 1024 * 1024
    tmpdir = tempfile.mkdtemp(prefix="moat-bench-")
    try:
        path = os.path.join(tmpdir, "input.bin")
        digest = make_file(path, size)
        m_up, m_down, c_up, c_down, m_rss = moat_run(os.path.abspath(a.moat), path, size, digest, tmpdir)
        a_up, a_down = azurite_run(path, size, digest, tmpdir)
        day = datetime.date.today().isoformat()
        print(f"Date: {day}. Command: `python3 bench/blob_transfer.py --size-mib {a.size_mib}`.\n")
        print(f"| {a.size_mib} MiB, azure-storage-blob SDK, 8 MiB blocks, 4 in parallel | upload MB/s | download MB/s |")
        print("|---|---|---|")
        print(f"| moat (SAS, content-addressed, fsync'd, sha256) | {m_up:.0f} | {m_down:.0f} |")
        print(f"| moat CLI (`moat model create` / `download`, end to end, sha256-verified) | {c_up:.0f} | {c_down:.0f} |")
        print(f"| Azurite 3.35.0 (on disk) | {a_up:.0f} | {a_down:.0f} |")
        print(f"| moat / Azurite | {m_up / a_up:.2f}x | {m_down / a_down:.2f}x |")
        print(f"\nmoat peak RSS growth during the run ({4 * a.size_mib} MiB moved through the server): {m_rss:.0f} MiB.")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
