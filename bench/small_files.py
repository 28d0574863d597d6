#!/usr/bin/env python3
"""Folder benchmark: many small files through moat and through Azurite, same machine, same run.

A folder of N files (default 1,000 of 4 KiB, in 10 subfolders) goes up and comes back down:

  - with the azure-storage-blob SDK, one Put Blob / Get Blob per file, 16 threads, against
    moat's blob plane (a container SAS from ListServiceSas) and against Azurite (the Azure
    storage emulator from npm, on-disk persistence): the servers' side of a folder transfer;
  - through moat's CLI: `moat data create` (a uri_folder: startPendingUpload, the files, the
    commit with every file's sha256) and `moat data download` (every file sha256-verified and
    fsynced), each end to end;

every downloaded file compared with its source. Rounds alternate which server goes first; with
`--runs N` the table shows medians, in files per second. Prints markdown for docs/BENCHMARKS.md.

    python3 bench/small_files.py [--files 1000] [--size 4096] [--runs 3] [--moat target/release/moat]

Needs: `cargo build --release`, `pip install azure-storage-blob==12.31.1`, and Azurite 3.35.0
(installed into bench/.azurite with npm when missing). Everything listens on 127.0.0.1 only.
"""
import argparse
import concurrent.futures
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from azure.storage.blob import BlobServiceClient, ContainerClient

from benchlib import azurite, moat_serving, print_header, registry_with_sas, settle

THREADS = 16


def make_folder(root, n, size):
    names = []
    for i in range(n):
        rel = f"part{i % 10}/file-{i:06d}.bin"
        os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(os.urandom(size))
        names.append(rel)
    return names


def same_tree(src, dst, names):
    for rel in names:
        with open(os.path.join(src, rel), "rb") as a, open(os.path.join(dst, rel), "rb") as b:
            if a.read() != b.read():
                raise RuntimeError(f"{rel} came back different")


def timed(ready, action):
    ready()
    t0 = time.perf_counter()
    action()
    return time.perf_counter() - t0


def sdk_folder(container: ContainerClient, src, names, out, ready):
    """Seconds to upload every file, then to download every file, 16 threads."""
    def up(rel):
        with open(os.path.join(src, rel), "rb") as f:
            container.upload_blob(rel, f, overwrite=True)

    def down(rel):
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            container.download_blob(rel).readinto(f)

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        t_up = timed(ready, lambda: list(pool.map(up, names)))
        t_down = timed(ready, lambda: list(pool.map(down, names)))
    same_tree(src, out, names)
    shutil.rmtree(out)
    return t_up, t_down


def moat_run(moat_bin, src, names, tmpdir, ready):
    data, state = os.path.join(tmpdir, "moat-data"), os.path.join(tmpdir, "state")
    with moat_serving(moat_bin, data):
        try:
            endpoint, env, account, sas = registry_with_sas(moat_bin, data, tmpdir, "benchreg", "bench")
            container = ContainerClient.from_container_url(f"{endpoint}/{account}/bench?{sas}")
            res = dict(zip(("sdk_up", "sdk_down"), sdk_folder(container, src, names, os.path.join(tmpdir, "sdk-out"), ready)))
            yml = os.path.join(tmpdir, "folder.yml")
            with open(yml, "w") as f:
                f.write(f"name: folder\nversion: 1\ntype: uri_folder\npath: {src}\n")
            cli_env = {**env, "MOAT_STATE_DIR": state}
            quiet = {"env": cli_env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            res["cli_up"] = timed(ready, lambda: subprocess.check_call(
                [moat_bin, "data", "create", "--file", yml, "--registry-name", "benchreg"], **quiet))
            out = os.path.join(tmpdir, "cli-out")
            res["cli_down"] = timed(ready, lambda: subprocess.check_call(
                [moat_bin, "data", "download", "--name", "folder", "--version", "1", "--registry-name", "benchreg",
                 "--download-path", out], **quiet))
            same_tree(src, os.path.join(out, "folder"), names)
            shutil.rmtree(out)
            return res
        finally:
            shutil.rmtree(state, ignore_errors=True)


def azurite_run(src, names, tmpdir, ready):
    with azurite(tmpdir) as (_, conn):
        container = BlobServiceClient.from_connection_string(conn).create_container("bench")
        return dict(zip(("sdk_up", "sdk_down"), sdk_folder(container, src, names, os.path.join(tmpdir, "sdk-out"), ready)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--size", type=int, default=4096, help="bytes per file")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--moat", default="target/release/moat")
    a = ap.parse_args()
    moat_bin = os.path.abspath(a.moat)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmpdir:
        src = os.path.join(tmpdir, "folder")
        names = make_folder(src, a.files, a.size)
        ready = lambda: settle(tmpdir, 0)
        results = {"moat": [], "azurite": []}
        for n in range(a.runs):
            for s in (("moat", "azurite") if n % 2 == 0 else ("azurite", "moat")):
                r = moat_run(moat_bin, src, names, tmpdir, ready) if s == "moat" else azurite_run(src, names, tmpdir, ready)
                print(f"run {n + 1}/{a.runs} {s}: " + ", ".join(f"{k} {a.files / v:.0f}" for k, v in r.items()) + " files/s",
                      file=sys.stderr, flush=True)
                results[s].append(r)
        med = {s: {k: statistics.median(r[k] for r in results[s]) for k in results[s][0]} for s in results}
        m, z = med["moat"], med["azurite"]
        rate = lambda secs: f"{a.files / secs:,.0f}"
        from importlib.metadata import version as pkg_version
        print_header("small_files.py", f"azure-storage-blob {pkg_version('azure-storage-blob')}; Azurite 3.35.0")
        print()
        print(f"| {a.files} files of {a.size} B, median of {a.runs} runs, files/s | moat upload | Azurite upload | moat download | Azurite download |")
        print("|---|---|---|---|---|")
        print(f"| azure-storage-blob SDK, one request per file, {THREADS} threads | {rate(m['sdk_up'])} | {rate(z['sdk_up'])} | "
              f"{rate(m['sdk_down'])} | {rate(z['sdk_down'])} |")
        print(f"| moat CLI (`moat data create` / `download`, end to end, sha256-verified, fsynced) | {rate(m['cli_up'])} | – | "
              f"{rate(m['cli_down'])} | – |")
        print()
        print(f"Ratios, SDK: upload {z['sdk_up'] / m['sdk_up']:.2f}x Azurite's, download {z['sdk_down'] / m['sdk_down']:.2f}x.")


if __name__ == "__main__":
    main()
