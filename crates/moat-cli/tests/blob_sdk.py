"""Drives moat's blob plane with the real azure-storage-blob SDK (called by tests/blob.rs).

Arguments: ENDPOINT ACCOUNT CONTAINER SAS. Prints one line of JSON with what it checked.
"""
import datetime
import json
import random
import sys

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
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

# Conditional requests, as the SDK makes them.
def refused(call, error, what, status=None, code=None):
    try:
        call()
    except error as e:
        assert status is None or e.status_code == status, f"{what}: {e.status_code}"
        assert code is None or e.error_code == code, f"{what}: {e.error_code}"
        return
    raise AssertionError(what)

small_blob = BlobClient.from_blob_url(f"{base}/model/small.bin?{sas}")
# An upload without overwrite=True (If-None-Match: *) leaves an existing blob alone: Put Blob...
# (8 MiB in one request: the refusal comes before the body is read, and the client still gets it.)
refused(lambda: small_blob.upload_blob(rng.randbytes(8 * 1024 * 1024)), ResourceExistsError, "an upload without overwrite replaced a blob")
assert small_blob.download_blob().readall() == small
# ...and Put Block List.
blocks = BlobClient.from_blob_url(f"{base}/model/weights/big.bin?{sas}", max_single_put_size=1024 * 1024, max_block_size=512 * 1024)
refused(lambda: blocks.upload_blob(rng.randbytes(2 * 1024 * 1024), max_concurrency=2), ResourceExistsError,
        "a block upload without overwrite replaced a blob")
assert reader.download_blob().readall() == big
etag = small_blob.get_blob_properties().etag
# A read whose copy is current (If-None-Match: <etag>, or If-Modified-Since after the change) is
# 304, which this SDK raises as a plain HttpResponseError, against Azure too.
refused(lambda: small_blob.get_blob_properties(etag=etag, match_condition=MatchConditions.IfModified), HttpResponseError,
        "If-None-Match with the current ETag did not answer 304", status=304)
last_change = small_blob.get_blob_properties().last_modified
refused(lambda: small_blob.get_blob_properties(if_modified_since=last_change), HttpResponseError,
        "If-Modified-Since the last change did not answer 304", status=304)
# A write conditional on the current ETag goes through; on the one it replaced, 412, and nothing changes.
small_blob.upload_blob(b"new", overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified)
refused(lambda: small_blob.upload_blob(b"newer", overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified),
        ResourceModifiedError, "a write conditional on a replaced ETag went through")
refused(lambda: small_blob.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified), ResourceModifiedError,
        "a read conditional on a replaced ETag was served")
refused(lambda: small_blob.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified), ResourceModifiedError,
        "a delete conditional on a replaced ETag went through")
long_ago = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
refused(lambda: small_blob.upload_blob(b"x", overwrite=True, if_unmodified_since=long_ago), ResourceModifiedError,
        "a write with If-Unmodified-Since before the last change went through")
assert small_blob.download_blob().readall() == b"new"
assert small_blob.download_blob(if_modified_since=long_ago).readall() == b"new"

# validate_content=True: an MD5 on every request, checked by the server on the way up (Put Blob
# and Put Block) and by the SDK on the way down (ranges of up to 4 MiB).
validated = rng.randbytes(1_500_000)
BlobClient.from_blob_url(f"{base}/model/validated.bin?{sas}", max_single_put_size=1024 * 1024, max_block_size=512 * 1024
                         ).upload_blob(validated, validate_content=True, max_concurrency=2)
BlobClient.from_blob_url(f"{base}/model/validated-small.bin?{sas}").upload_blob(b"small and checked", validate_content=True)
checked = BlobClient.from_blob_url(f"{base}/model/validated.bin?{sas}", max_chunk_get_size=512 * 1024, max_single_get_size=512 * 1024)
assert checked.download_blob(validate_content=True, max_concurrency=2).readall() == validated
assert BlobClient.from_blob_url(f"{base}/model/validated-small.bin?{sas}").download_blob(validate_content=True).readall() == b"small and checked"

# Metadata: set with the bytes (Put Blob, Put Block List), replaced on its own (Set Blob
# Metadata: a new ETag, the bytes unchanged), read back with the properties and in listings.
tagged = BlobClient.from_blob_url(f"{base}/model/tagged.bin?{sas}")
tagged.upload_blob(b"tagged", metadata={"upload_status": "started", "Name": "m"})
assert tagged.get_blob_properties().metadata == {"upload_status": "started", "name": "m"}
before = tagged.get_blob_properties().etag
tagged.set_blob_metadata({"upload_status": "completed", "version": "1"})
props = tagged.get_blob_properties()
assert props.metadata == {"upload_status": "completed", "version": "1"} and props.etag != before, props
assert tagged.download_blob().readall() == b"tagged"
listed = {b.name: b.metadata for b in cc.list_blobs(name_starts_with="model/tagged", include=["metadata"])}
assert listed == {"model/tagged.bin": {"upload_status": "completed", "version": "1"}}, listed
assert [b.metadata for b in cc.list_blobs(name_starts_with="model/tagged")] in ([None], [{}]), "metadata only when asked"
refused(lambda: tagged.set_blob_metadata({"upload_status": "x"}, etag=before, match_condition=MatchConditions.IfNotModified),
        ResourceModifiedError, "metadata set on a replaced ETag")
refused(lambda: tagged.set_blob_metadata({"1st": "x"}), HttpResponseError, "a name that is not an identifier", 400, "InvalidMetadata")
refused(lambda: tagged.set_blob_metadata({"big": "x" * (8192 - 2)}), HttpResponseError, "metadata over 8 KiB", 400, "MetadataTooLarge")
assert tagged.get_blob_properties().metadata == {"upload_status": "completed", "version": "1"}, "a refusal changed nothing"
tagged.set_blob_metadata({"big": "x" * (8192 - 3)})  # names and values: 8 KiB exactly
assert len(tagged.get_blob_properties().metadata["big"]) == 8189
tagged.set_blob_metadata({})
assert tagged.get_blob_properties().metadata == {}
refused(lambda: BlobClient.from_blob_url(f"{base}/model/no-such?{sas}").set_blob_metadata({"a": "b"}), ResourceNotFoundError,
        "metadata set on a blob that does not exist")
blocks = BlobClient.from_blob_url(f"{base}/model/tagged-blocks.bin?{sas}", max_single_put_size=1024, max_block_size=1024)
blocks.upload_blob(b"z" * 3000, metadata={"parts": "3"})
assert blocks.get_blob_properties().metadata == {"parts": "3"}

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
