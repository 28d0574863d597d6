"""Uploads a folder to, or downloads one from, a SAS URI with the azure-storage-blob SDK.

Usage: asset_sdk.py upload SAS_URI SRC_DIR | asset_sdk.py download SAS_URI DEST_DIR
The SAS URI is a container (or a folder inside one) as startPendingUpload and datareferences
return it. Uploads use blocks in parallel; downloads use parallel ranged reads.
"""
import os
import sys
from urllib.parse import urlsplit, urlunsplit

from azure.storage.blob import ContainerClient

mode, sas_uri, local = sys.argv[1:4]
parts = urlsplit(sas_uri)
segs = parts.path.strip("/").split("/")
account, container, prefix = segs[0], segs[1], "/".join(segs[2:])
container_url = urlunsplit((parts.scheme, parts.netloc, f"/{account}/{container}", parts.query, ""))
cc = ContainerClient.from_container_url(container_url, max_single_put_size=64 * 1024, max_block_size=64 * 1024,
                                        max_chunk_get_size=64 * 1024, max_single_get_size=64 * 1024)
base = f"{prefix}/" if prefix else ""
if mode == "upload":
    for root, _, files in os.walk(local):
        for f in files:
            path = os.path.join(root, f)
            rel = os.path.relpath(path, local).replace(os.sep, "/")
            with open(path, "rb") as fh:
                cc.upload_blob(base + rel, fh, overwrite=True, max_concurrency=4)
elif mode == "download":
    for b in cc.list_blobs(name_starts_with=base):
        rel = b.name[len(base):]
        dest = os.path.join(local, *rel.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as fh:
            cc.download_blob(b.name, max_concurrency=4).readinto(fh)
else:
    sys.exit(f"unknown mode {mode}")
