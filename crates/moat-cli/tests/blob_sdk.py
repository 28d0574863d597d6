"""Drives moat's blob plane with the real azure-storage-blob SDK (called by tests/blob.rs).

Arguments: ENDPOINT ACCOUNT CONTAINER SAS. Prints one line of JSON with what it checked.
"""
import json
import random
import sys

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient

endpoint, account, container, sas = sys.argv[1:5]
base = f"{endpoint}/{account}/{container}"
rng = random.Random(7)
small = rng.randbytes(1000)
big = rng.randbytes(3 * 1024 * 1024 + 123)

# One Put Blob.
BlobClient.from_blob_url(f"{base}/model/small.bin?{sas}").upload_blob(small, content_settings=None)
# Blocks in parallel, then a block list.
BlobClient.from_blob_url(
    f"{base}/model/weights/big.bin?{sas}", max_single_put_size=1024 * 1024, max_block_size=512 * 1024
).upload_blob(big, max_concurrency=4)
# An empty blob.
BlobClient.from_blob_url(f"{base}/model/empty?{sas}").upload_blob(b"")

cc = ContainerClient.from_container_url(f"{base}?{sas}")
names = sorted(b.name for b in cc.list_blobs(name_starts_with="model/"))
assert names == ["model/empty", "model/small.bin", "model/weights/big.bin"], names
walked = sorted(b.name for b in cc.walk_blobs(name_starts_with="model/", delimiter="/"))
assert walked == ["model/empty", "model/small.bin", "model/weights/"], walked
sizes = {b.name: b.size for b in cc.list_blobs()}
assert sizes["model/weights/big.bin"] == len(big), sizes

# Download in parallel ranged chunks, a range, properties, the empty blob.
reader = BlobClient.from_blob_url(
    f"{base}/model/weights/big.bin?{sas}", max_chunk_get_size=256 * 1024, max_single_get_size=256 * 1024
)
assert reader.download_blob(max_concurrency=4).readall() == big
assert reader.download_blob(offset=1000, length=5000).readall() == big[1000:6000]
assert reader.get_blob_properties().size == len(big)
assert BlobClient.from_blob_url(f"{base}/model/small.bin?{sas}").download_blob().readall() == small
assert BlobClient.from_blob_url(f"{base}/model/empty?{sas}").download_blob().readall() == b""

# Staged blocks are listed (what a resuming client asks), then committed.
staged = BlobClient.from_blob_url(f"{base}/model/staged.bin?{sas}")
staged.stage_block("YmxvY2stMDAx", b"a" * 10)
staged.stage_block("YmxvY2stMDAy", b"b" * 20)
committed, uncommitted = staged.get_block_list("all")
assert committed == [] and [(b.id, b.size) for b in uncommitted] == [("YmxvY2stMDAx", 10), ("YmxvY2stMDAy", 20)], uncommitted
staged.commit_block_list(["YmxvY2stMDAy", "YmxvY2stMDAx"])
assert staged.download_blob().readall() == b"b" * 20 + b"a" * 10
assert staged.get_block_list("uncommitted")[1] == []

# Delete.
gone = BlobClient.from_blob_url(f"{base}/model/empty?{sas}")
gone.delete_blob()
assert not gone.exists()
try:
    gone.download_blob()
    raise AssertionError("a deleted blob downloaded")
except ResourceNotFoundError:
    pass

print(json.dumps({"uploaded": names, "big_bytes": len(big)}))
