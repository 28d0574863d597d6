"""Drives moat with the real azure-ai-ml SDK, as a data scientist would (called by tests/aiml.rs).

Arguments: ENDPOINT REGISTRY WORKDIR; the token in MOAT_TOKEN. moat is an Azure "cloud" of its own (cloud_metadata:
its URL is the resource manager and the registry discovery endpoint); the SDK trusts moat's CA
through REQUESTS_CA_BUNDLE. A model folder goes up (discovery, the data plane's tempdatarefs,
blob uploads with metadata, the version), comes back down (datarefs, List Blobs, ranged Get Blob)
and is archived and restored (each a GET and a PUT of the version as read); then data (a folder
and one file), an environment with its build context and a component with its code go up. Prints
one line of JSON: the asset ID and the files of each, with sizes and sha256, for the Rust side to
check against what moat recorded and what its own CLI downloads.
"""
import hashlib
import json
import os
import random
import sys
import time

from azure.ai.ml import Input, MLClient, command
from azure.ai.ml.entities import BuildContext, Data, Environment, Model
from azure.core.credentials import AccessToken

endpoint, registry, work = sys.argv[1:4]
token = os.environ["MOAT_TOKEN"]


class MoatToken:
    """A token moat issued (the test's service principal's): the SDK only asks for one."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken(token, int(time.time()) + 3000)


base = endpoint.rstrip("/") + "/"
ml = MLClient(MoatToken(), registry_name=registry, enable_telemetry=False, cloud="moat", cloud_metadata={
    "azure_portal": base, "resource_manager": base, "active_directory": base, "aml_resource_id": base,
    "storage_endpoint": "core.windows.net", "registry_discovery_endpoint": base})

# A model folder: a nested file, an empty one, and one over the SDK's single-request limit
# (64 MiB), which it uploads in blocks.
rng = random.Random(11)
folder = os.path.join(work, "sentiment-model")
files = {
    "MLmodel": b"flavors:\n  python_function: {}\n",
    "weights/model.bin": rng.randbytes(65 * 1024 * 1024 + 17),
    "weights/empty.txt": b"",
    "tokenizer/vocab.json": rng.randbytes(5000),
}
for rel, data in files.items():
    path = os.path.join(folder, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)

created = ml.models.create_or_update(Model(name="sentiment", version="1", path=folder, description="from azure-ai-ml",
                                           tags={"team": "nlp"}))
asset_id = f"azureml://registries/{registry}/models/sentiment/versions/1"
assert created.id == asset_id, created.id
got = ml.models.get(name="sentiment", version="1")
assert (got.description, got.tags) == ("from azure-ai-ml", {"team": "nlp"}), (got.description, got.tags)

# Down again, byte for byte, where the SDK puts a folder: <download_path>/<name>/<folder>.
dl = os.path.join(work, "downloaded")
ml.models.download(name="sentiment", version="1", download_path=dl)
root = os.path.join(dl, "sentiment", "sentiment-model")
found = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
assert found == sorted(files), found
for rel, data in files.items():
    with open(os.path.join(root, rel), "rb") as f:
        assert f.read() == data, f"{rel} came back with other bytes"

# Archive and restore: the SDK reads the version and writes it back as it read it (the data
# plane's locations and an empty flavors), which must be the same content, not a change of it.
# (The SDK lists a registry's versions without a view type: the server's default, active only.)
assert [m.version for m in ml.models.list(name="sentiment")] == ["1"]
ml.models.archive(name="sentiment", version="1")
assert [m.version for m in ml.models.list(name="sentiment")] == [], "an archived version is not listed"
ml.models.restore(name="sentiment", version="1")
assert [m.version for m in ml.models.list(name="sentiment")] == ["1"], "a restored version is listed again"

# Every other type the SDK creates in a registry: data (a folder, and one file), an environment
# with its Docker build context, and a component whose code goes up as a code asset.
def write(root, tree):
    for rel, data in tree.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return {rel: [len(data), hashlib.sha256(data).hexdigest()] for rel, data in tree.items()}

rows = write(os.path.join(work, "rows"), {"a.csv": b"a,b\n1,2\n", "part/b.csv": rng.randbytes(3000)})
one = write(work, {"one.csv": b"x\n1\n"})
ctx = write(os.path.join(work, "ctx"), {"Dockerfile": b"FROM python:3.11-slim\nCOPY requirements.txt .\n",
                                        "requirements.txt": b"numpy\n"})
src = write(os.path.join(work, "src"), {"train.py": b"print('training')\n"})
assert ml.data.create_or_update(Data(name="rows", version="1", path=os.path.join(work, "rows"), type="uri_folder")).id \
    == f"azureml://registries/{registry}/data/rows/versions/1"
assert ml.data.create_or_update(Data(name="one", version="1", path=os.path.join(work, "one.csv"), type="uri_file")).id \
    == f"azureml://registries/{registry}/data/one/versions/1"
env = ml.environments.create_or_update(Environment(name="trainer", version="1", build=BuildContext(path=os.path.join(work, "ctx"))))
assert env.id == f"azureml://registries/{registry}/environments/trainer/versions/1", env.id
step = command(name="train_step", version="1", code=os.path.join(work, "src"), command="python train.py --epochs ${{inputs.epochs}}",
               inputs={"epochs": Input(type="integer")}, environment=env.id)
component = ml.components.create_or_update(step.component)
assert component.id == f"azureml://registries/{registry}/components/train_step/versions/1", component.id
assert component.code.startswith(f"azureml://registries/{registry}/codes/"), component.code

# The registry's names by type (the SDK sends its list view as its enum's name), the latest of
# one, and a component named without a version (its default version, the latest).
assert sorted(m.name for m in ml.models.list()) == ["sentiment"]
assert sorted(d.name for d in ml.data.list()) == ["one", "rows"]
assert sorted(e.name for e in ml.environments.list()) == ["trainer"]
assert ml.data.get("rows", label="latest").version == "1"
assert ml.components.get("train_step").version == "1"

# A second version: the SDK finds a name's latest by asking for its versions newest first
# ($orderBy=createdtime desc, $top=1), active ones only.
write(os.path.join(work, "sentiment-v2"), {"MLmodel": b"flavors: {}\n"})
ml.models.create_or_update(Model(name="sentiment", version="2", path=os.path.join(work, "sentiment-v2")))
assert ml.models.get(name="sentiment", label="latest").version == "2"
ml.models.archive(name="sentiment", version="2")
assert ml.models.get(name="sentiment", label="latest").version == "1", "an archived version is not the latest"
ml.models.restore(name="sentiment", version="2")

print(json.dumps({
    "id": created.id,
    "files": {rel: [len(data), hashlib.sha256(data).hexdigest()] for rel, data in files.items()},
    "rows": rows, "one": one, "ctx": ctx, "src": src, "code": component.code,
}))
