#!/usr/bin/env python3
"""Blob transfer benchmark: moat against Azurite, same machine, same run, same clients, same file.

Uploads and downloads one file (default 1 GiB) through moat's blob plane (a SAS from
ListServiceSas) and through Azurite (the Azure storage emulator from npm, on-disk persistence):

  - with the azure-storage-blob SDK (8 MiB blocks, 4 in parallel), the bytes downloaded
    compared by sha256;
  - with curl, one Put Blob request (`curl -T`) and one Get Blob to /dev/null: the server's
    side of a transfer, which the Python SDK (~300-400 MB/s here whatever the server) hides;
    the blob is then read back once, untimed, and compared by sha256;
  - through moat's CLI, with a second file of the same size (other bytes, so that none of its
    blocks is stored already): `moat model create` (startPendingUpload, parallel blocks, commit,
    the server's sha256 checked against the CLI's) and `moat model download` (parallel ranges,
    sha256-verified, fsynced), each end to end, and the same download once more, which finds
    the blob in the server's page cache (the first read it from the disk);

and moat's peak RSS growth. It also times the disk alone doing what a first CLI download asks of
it when client and server share one machine: reading the file while it is not cached (4 threads,
8 MiB ranges in 1 MiB reads, as the server serves the CLI's ranges) and at the same time writing
as much with `O_DIRECT` and fsyncing it (as the CLI writes); that sets the first download's
pace here. Each timed transfer starts after `sync`; in the 'recycled' memory
condition a scratch file twice the size is written and deleted first (see `--help` and
docs/BENCHMARKS.md). Rounds alternate which server goes first; with `--runs N` the tables
show medians. Prints markdown tables for docs/BENCHMARKS.md.

    python3 bench/blob_transfer.py [--size-mib 1024] [--runs 3] [--memory as-found|recycled|both]
                                   [--moat target/release/moat]

Needs: `cargo build --release`, `pip install azure-storage-blob==12.31.1`, curl, and Azurite
3.35.0 (installed into bench/.azurite with npm when missing). Everything listens on 127.0.0.1 only.
"""
import argparse
import datetime
import hashlib
import mmap
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from azure.storage.blob import BlobClient, BlobServiceClient, ContainerSasPermissions, generate_container_sas

from benchlib import (AZURITE_KEY, MEMORY_CONDITIONS, MEMORY_HELP, azurite, moat_serving, print_header, registry_with_sas,
                      rss_kib, settle, version)

HERE = os.path.dirname(os.path.abspath(__file__))
BLOCK = 8 * 1024 * 1024
UPLOAD_TARGET, DOWNLOAD_TARGET = 800, 1500


def make_file(path, size, seed=20261126):
    rng = random.Random(seed)
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


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(64 * 1024 * 1024):
            h.update(b)
    return h.hexdigest()


def timed(ready, size, action):
    """MB/s (1e6 bytes) of `size` bytes moved by `action`, after `ready()`."""
    ready()
    t0 = time.perf_counter()
    action()
    return size / (time.perf_counter() - t0) / 1e6


def sdk_transfers(client, path, size, digest, tmpdir, ready):
    out = os.path.join(tmpdir, "download.bin")

    def up():
        with open(path, "rb") as f:
            client.upload_blob(f, length=size, overwrite=True, max_concurrency=4)

    def down():
        with open(out, "wb") as f:
            client.download_blob(max_concurrency=4).readinto(f)

    res = {"sdk_up": timed(ready, size, up), "sdk_down": timed(ready, size, down)}
    got = sha256_of(out)
    os.remove(out)
    assert got == digest, "the SDK downloaded other bytes than it uploaded"
    return res


def curl_transfers(url, path, size, digest, ready):
    """Put Blob with the whole file in one request, then Get Blob to /dev/null (then once more,
    untimed, hashed)."""
    codes = {}

    def put():
        codes["put"] = subprocess.check_output(
            ["curl", "-sS", "-T", path, "-H", "Expect:", "-H", "x-ms-blob-type: BlockBlob", "-H", "x-ms-version: 2023-11-03",
             "-o", "/dev/null", "-w", "%{http_code}", url], text=True)

    def get():
        codes["get"] = subprocess.check_output(
            ["curl", "-sS", "-H", "x-ms-version: 2023-11-03", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url],
            text=True)

    res = {"curl_up": timed(ready, size, put)}
    assert codes["put"] == "201", f"curl Put Blob answered {codes['put']}"
    res["curl_down"] = timed(ready, size, get)
    assert codes["get"] == f"200 {size}", f"curl Get Blob answered {codes['get']!r}, expected '200 {size}'"
    h = hashlib.sha256()
    with urllib.request.urlopen(urllib.request.Request(url, headers={"x-ms-version": "2023-11-03"})) as r:
        while b := r.read(8 * 1024 * 1024):
            h.update(b)
    assert h.hexdigest() == digest, "Get Blob returned other bytes than Put Blob stored"
    return res


def disk_ceiling(path, size, tmpdir, ready):
    """MB/s per direction of the disk reading `path` (not cached: its pages are dropped first)
    with 4 threads, 8 MiB ranges in 1 MiB reads, while one thread writes `size` bytes to a new
    file with O_DIRECT in 8 MiB writes and fsyncs it; None where the file system refuses
    O_DIRECT."""
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    out = os.path.join(tmpdir, "ceiling.bin")
    try:
        wfd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT)
    except OSError:
        return None
    ranges, lock = list(range(0, size, BLOCK)), threading.Lock()

    def reader():
        rfd = os.open(path, os.O_RDONLY)
        try:
            while True:
                with lock:
                    if not ranges:
                        return
                    start = ranges.pop(0)
                for o in range(start, min(start + BLOCK, size), 1024 * 1024):
                    os.pread(rfd, 1024 * 1024, o)
        finally:
            os.close(rfd)

    def writer():
        buf = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT needs
        buf.write(os.urandom(BLOCK))
        for o in range(0, size - size % BLOCK, BLOCK):
            os.pwritev(wfd, [buf], o)
        os.fsync(wfd)

    try:
        ready()
        threads = [threading.Thread(target=reader) for _ in range(4)] + [threading.Thread(target=writer)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return size / (time.perf_counter() - t) / 1e6
    finally:
        os.close(wfd)
        os.unlink(out)


def moat_run(moat_bin, path, cli_path, size, digest, tmpdir, ready):
    data, state = os.path.join(tmpdir, "moat-data"), os.path.join(tmpdir, "state")
    with moat_serving(moat_bin, data) as proc:
        try:
            endpoint, env, account, sas = registry_with_sas(moat_bin, data, tmpdir, "benchreg", "bench")
            base_rss = rss_kib(proc.pid, "VmRSS:")
            url = f"{endpoint}/{account}/bench/big.bin?{sas}"
            res = sdk_transfers(BlobClient.from_blob_url(url, max_block_size=BLOCK, max_single_put_size=BLOCK,
                                                         max_chunk_get_size=BLOCK), path, size, digest, tmpdir, ready)
            res.update(curl_transfers(f"{endpoint}/{account}/bench/curl.bin?{sas}", path, size, digest, ready))
            # A file of its own through the CLI: `moat model create` (startPendingUpload, blocks, commit)
            # and `moat model download` (ranges, sha256-verified), each timed end to end.
            model = os.path.join(tmpdir, "model")
            os.makedirs(model, exist_ok=True)
            os.link(cli_path, os.path.join(model, "weights.bin"))
            yml = os.path.join(tmpdir, "model.yml")
            open(yml, "w").write("name: big\nversion: 1\npath: ./model\n")
            cli_env = {**env, "MOAT_STATE_DIR": state}
            quiet = {"env": cli_env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            res["cli_up"] = timed(ready, size, lambda: subprocess.check_call(
                [moat_bin, "model", "create", "--file", yml, "--registry-name", "benchreg"], **quiet))
            out = os.path.join(tmpdir, "cli-out")
            res["cli_down"] = timed(ready, size, lambda: subprocess.check_call(
                [moat_bin, "model", "download", "--name", "big", "--version", "1", "--registry-name", "benchreg",
                 "--download-path", out], **quiet))
            shutil.rmtree(out, ignore_errors=True)
            # The same download again: the first one read the blob from the disk (the CLI's upload
            # wrote it around the page cache), this one finds it cached, as later downloads of a
            # blob in use do.
            res["cli_again_down"] = timed(ready, size, lambda: subprocess.check_call(
                [moat_bin, "model", "download", "--name", "big", "--version", "1", "--registry-name", "benchreg",
                 "--download-path", out], **quiet))
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(model, ignore_errors=True)
            res["rss"] = (rss_kib(proc.pid, "VmHWM:") - base_rss) / 1024
            return res
        finally:
            shutil.rmtree(state, ignore_errors=True)


def azurite_run(path, size, digest, tmpdir, ready):
    with azurite(tmpdir) as (endpoint, conn):
        svc = BlobServiceClient.from_connection_string(conn, max_block_size=BLOCK, max_single_put_size=BLOCK,
                                                       max_chunk_get_size=BLOCK)
        svc.create_container("bench")
        res = sdk_transfers(svc.get_blob_client("bench", "big.bin"), path, size, digest, tmpdir, ready)
        sas = generate_container_sas("devstoreaccount1", "bench", account_key=AZURITE_KEY,
                                     permission=ContainerSasPermissions(read=True, write=True, create=True),
                                     expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2))
        res.update(curl_transfers(f"{endpoint}/bench/curl.bin?{sas}", path, size, digest, ready))
        return res


ROWS = [("sdk", "azure-storage-blob SDK (8 MiB blocks, 4 in parallel)"),
        ("curl", "curl: one Put Blob / one Get Blob to /dev/null"),
        ("cli", "moat CLI (`moat model create` / `download`, end to end, sha256-verified, fsynced)"),
        ("cli_again", "moat CLI, the same download again (the blob now in the server's page cache)")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--memory", choices=[*MEMORY_CONDITIONS, "both"], default="both", help=MEMORY_HELP)
    ap.add_argument("--moat", default=os.path.join(HERE, "..", "target", "release", "moat"))
    a = ap.parse_args()
    if a.size_mib < 1 or a.runs < 1:
        ap.error("--size-mib and --runs must be at least 1")
    size = a.size_mib * 1024 * 1024
    conds = MEMORY_CONDITIONS if a.memory == "both" else (a.memory,)
    results = {(c, s): [] for c in conds for s in ("moat", "azurite")}
    ceiling = {c: [] for c in conds}
    tmpdir = tempfile.mkdtemp(prefix="moat-bench-")
    try:
        path = os.path.join(tmpdir, "input.bin")
        digest = make_file(path, size)
        # The CLI uploads other bytes than the SDK and curl before it: with the same file, each
        # of its blocks was already stored (the SDK's 8 MiB blocks, the same boundaries), and
        # the server wrote nothing new (until 2026-11-27, this inflated the CLI's upload row).
        cli_path = os.path.join(tmpdir, "cli-input.bin")
        make_file(cli_path, size, seed=20261127)
        runs = {"moat": lambda ready: moat_run(os.path.abspath(a.moat), path, cli_path, size, digest, tmpdir, ready),
                "azurite": lambda ready: azurite_run(path, size, digest, tmpdir, ready)}
        for n in range(a.runs):
            for c in (conds if n % 2 == 0 else conds[::-1]):
                ready = lambda c=c: settle(tmpdir, 2 * size if c == "recycled" else 0)  # noqa: E731
                for s in (("moat", "azurite") if n % 2 == 0 else ("azurite", "moat")):
                    results[c, s].append(runs[s](ready))
                    print(f"run {n + 1}/{a.runs} {c} {s}: " + ", ".join(
                        f"{k} {v:.0f}" for k, v in results[c, s][-1].items() if k != "rss") + " MB/s", file=sys.stderr)
                ceiling[c].append(disk_ceiling(cli_path, size, tmpdir, ready))
                print(f"run {n + 1}/{a.runs} {c}: the disk reading and writing at once {ceiling[c][-1] or 0:.0f} MB/s", file=sys.stderr)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    print_header("blob_transfer.py", f"azure-storage-blob {version(['python3', '-c', 'import azure.storage.blob as b; print(b.__version__)'])}; "
                 f"{version(['curl', '--version'])[:11]}; Azurite 3.35.0")
    med_note = f", median of {a.runs} runs" if a.runs > 1 else ""
    verdicts = []
    for c in conds:
        med = {s: {k: statistics.median(r[k] for r in results[c, s]) for k in results[c, s][0]} for s in ("moat", "azurite")}
        m, z = med["moat"], med["azurite"]
        print(f"\nMemory {c}:\n")
        print(f"| {a.size_mib} MiB{med_note}, MB/s | moat upload | Azurite upload | moat download | Azurite download |")
        print("|---|---|---|---|---|")
        for key, label in ROWS:
            up, down = f"{key}_up", f"{key}_down"
            print(f"| {label} | {f'{m[up]:.0f}' if up in m else '–'} | {f'{z[up]:.0f}' if up in z else '–'} | {m[down]:.0f} | "
                  f"{f'{z[down]:.0f}' if down in z else '–'} |")
        disk = [v for v in ceiling[c] if v is not None]
        if disk:
            print(f"\nThe disk alone, reading {a.size_mib} MiB not cached while writing as much with O_DIRECT (what a first CLI "
                  f"download asks of it with client and server on one machine; no network, no hashing): "
                  f"{statistics.median(disk):.0f} MB/s per direction{' (median)' if len(disk) > 1 else ''}, "
                  f"{min(disk):.0f}-{max(disk):.0f} over the runs.")
        best_up = max(m["sdk_up"], m["cli_up"])
        best_down = max(m["sdk_down"], m["cli_down"])
        again = m["cli_again_down"]
        verdicts.append(f"{c}: upload {best_up:.0f} (target {UPLOAD_TARGET}: {'met' if best_up >= UPLOAD_TARGET else 'NOT met'}), "
                        f"download {best_down:.0f} (target {DOWNLOAD_TARGET}: {'met' if best_down >= DOWNLOAD_TARGET else 'NOT met'}); "
                        f"download of a cached blob {again:.0f} ({'met' if again >= DOWNLOAD_TARGET else 'NOT met'})")
    peak = max(r["rss"] for c in conds for r in results[c, "moat"])
    print(f"\nmoat peak RSS growth during a run ({7 * a.size_mib} MiB moved through the server): {peak:.0f} MiB (largest of the runs).")
    print("\nTargets, best moat client (SDK or CLI) per direction: " + "; ".join(verdicts) + ".")


if __name__ == "__main__":
    sys.exit(main())
