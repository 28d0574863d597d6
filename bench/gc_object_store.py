#!/usr/bin/env python3
"""Garbage collection on an object store: how long `moat storage gc` takes on Azurite.

Run through bench/gc_object_store.sh, which starts Azurite (the Azure Storage emulator) on
loopback and sets MOAT_TEST_AZURITE. Starts `moat serve` with its bytes in a fresh Azurite
prefix (`MOAT_BLOB_URL=azure://moat-test/<uuid>`), stores `--referenced` small blobs that stay
and `--unreferenced` ones that are deleted (through the blob plane, with a SAS), waits past the
grace period (1 s here), then times a dry run and a collection, each end to end through the
CLI, and checks the counts. There is no peer: distribution and Harbor collect offline
(`registry garbage-collect`, read-only), so nothing comparable runs while they serve.

usage: bench/gc_object_store.sh [--unreferenced N] [--referenced M] [--moat target/release/moat]
"""
import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import AZURITE_KEY, moat_serving, print_header, registry_with_sas  # noqa: E402



def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--unreferenced", type=int, default=1000)
    p.add_argument("--referenced", type=int, default=1000)
    p.add_argument("--moat", default="target/release/moat")
    a = p.parse_args()
    azurite = os.environ.get("MOAT_TEST_AZURITE")
    if not azurite:
        sys.exit("MOAT_TEST_AZURITE is not set: run bench/gc_object_store.sh, which starts Azurite")
    moat = os.path.abspath(a.moat)
    print_header("gc_object_store.py", "Azurite 3.35.0 (scripts/object-stores-for-tests.sh)")
    tmp = tempfile.mkdtemp()
    data = os.path.join(tmp, "data")
    env_server = {"MOAT_GC_INTERVAL_SECS": "0", "MOAT_GC_GRACE_SECS": "1",
                  "MOAT_BLOB_URL": f"azure://moat-test/{uuid.uuid4()}", "AZURE_STORAGE_ACCOUNT_NAME": "devstoreaccount1",
                  "AZURE_STORAGE_ACCOUNT_KEY": AZURITE_KEY, "AZURE_STORAGE_ENDPOINT": azurite, "AZURE_ALLOW_HTTP": "true"}
    try:
        with moat_serving(moat, data, env_server):
            endpoint, env, account, sas = registry_with_sas(moat, data, tmp, "gcreg", "gcbench")
            base = f"{endpoint}/{account}/gcbench"

            def store(i):
                url = f"{base}/b{i}?{sas}"
                body = f"blob {i} {uuid.uuid4()}".encode()
                urllib.request.urlopen(urllib.request.Request(url, data=body, method="PUT", headers={"x-ms-blob-type": "BlockBlob"})).read()
                if i < a.unreferenced:
                    urllib.request.urlopen(urllib.request.Request(url, method="DELETE")).read()

            total = a.unreferenced + a.referenced
            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(store, range(total)))
            print(f"stored {total} objects, {a.unreferenced} of them then deleted, in {time.perf_counter() - t0:.1f} s")
            time.sleep(1.5)
            rows = []
            for name, args in (("dry run", ["--dry-run"]), ("collection", [])):
                t0 = time.perf_counter()
                out = json.loads(subprocess.check_output([moat, "storage", "gc", *args], env=env))
                secs = time.perf_counter() - t0
                if (out["files"], out["removed"]) != (total, a.unreferenced):
                    sys.exit(f"{name}: expected {total} objects looked at and {a.unreferenced} removed, got {out}")
                rows.append((name, out["files"], out["removed"], secs))
            after = json.loads(subprocess.check_output([moat, "storage", "gc", "--dry-run"], env=env))
            if after["files"] != a.referenced:
                sys.exit(f"after the collection the store holds {after['files']} objects, not {a.referenced}")
            print()
            print("| `moat storage gc` on Azurite | objects looked at | removed | seconds, end to end |")
            print("|---|---|---|---|")
            for name, files, removed, secs in rows:
                print(f"| {name} | {files:,} | {removed:,} | {secs:.2f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
