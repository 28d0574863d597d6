"""Helpers the benchmark scripts share: free loopback ports, waiting for a listener, a
process's memory, a tool's version line, a registry with a container SAS on a running moat,
Azurite on loopback."""
import contextlib
import datetime
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

# Azurite's well-known development account key (public, in its documentation).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HERE = os.path.dirname(os.path.abspath(__file__))


@contextlib.contextmanager
def moat_serving(moat_bin, data_dir, env=None):
    """`moat serve` over plain HTTP on a free 127.0.0.1 port with data in `data_dir` (its profile
    there, see `registry_with_sas`), `MOAT_LOG=warn` and `env` on top of this environment; yields
    the process once it listens. Stopped, and `data_dir` removed, on exit."""
    port = free_port()
    proc = subprocess.Popen([moat_bin, "serve", "--tls=false", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "MOAT_LOG": "warn", **(env or {})})
    try:
        wait_port(port)
        time.sleep(0.3)
        yield proc
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def azurite(scratch_dir):
    """Azurite 3.35.0's blob service (installed into bench/.azurite with npm when missing) on a
    free 127.0.0.1 port, persisting under `scratch_dir`; yields (endpoint, connection string).
    Stopped, and its files removed, on exit."""
    binary = os.path.join(HERE, ".azurite", "node_modules", ".bin", "azurite-blob")
    if not os.path.exists(binary):
        subprocess.check_call(["npm", "install", "--prefix", os.path.join(HERE, ".azurite"), "--no-audit", "--no-fund",
                               "azurite@3.35.0"], stdout=subprocess.DEVNULL)
    port = free_port()
    loc = os.path.join(scratch_dir, "azurite")
    proc = subprocess.Popen([binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", loc,
                             "--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        endpoint = f"http://127.0.0.1:{port}/devstoreaccount1"
        yield endpoint, (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
                         f"BlobEndpoint={endpoint};")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(loc, ignore_errors=True)


def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=30):
    """Waits until something accepts connections on 127.0.0.1:port."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def rss_kib(pid, field):
    """A memory field of /proc/PID/status in KiB (VmRSS, VmHWM); 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def version(cmd, timeout=30):
    """The first line a tool prints for its version, or '?'."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


MEMORY_CONDITIONS = ("as-found", "recycled")
MEMORY_HELP = """memory condition before each timed transfer: 'as-found' only flushes earlier writes
(`sync`), 'recycled' also writes and deletes a scratch file twice the transfer's size, so the
page cache the transfer fills comes from memory the guest touched a moment ago; 'both' (the
default) measures each transfer in each condition. On VMs that back guest memory lazily (this
machine: a 1 GiB `dd` into the page cache takes 2.5 s in memory untouched for a while and 0.2 s
in recycled memory, all of it kernel CPU), 'as-found' measures the hypervisor as much as the
server; see docs/BENCHMARKS.md"""


def settle(scratch_dir, recycle_bytes):
    """Prepares a timed transfer: writes made earlier (by the previous transfer, another server,
    the input files) are flushed so none is written back during it; with `recycle_bytes`,
    that much is written to a scratch file and deleted, so the transfer's page cache is taken
    from memory touched a moment ago (the deleted file's dirty pages are dropped, not written)."""
    os.sync()
    if recycle_bytes:
        path = os.path.join(scratch_dir, "recycle.tmp")
        buf = bytes(64 * 1024 * 1024)
        with open(path, "wb") as f:
            for _ in range(-(-recycle_bytes // len(buf))):
                f.write(buf)
        os.unlink(path)


def print_header(script, tools):
    """The first lines of a benchmark's report: date, the command as run, the machine, `tools`."""
    import datetime
    import shlex
    import sys
    cmd = f"python3 bench/{script} " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    print(f"Date: {datetime.date.today().isoformat()}. Command: `{cmd.strip()}`.")
    print(f"Machine: {os.cpu_count()} vCPU. {tools}.")


def registry_with_sas(moat_bin, data_dir, scratch_dir, registry, container):
    """On the moat serving from `data_dir` (its profile there): creates registry `registry` and
    signs a two-hour read/add/create/write/delete/list SAS for `container` of its storage account.
    Returns the server's endpoint, the CLI's environment, the account's name and the SAS."""
    profile = json.load(open(os.path.join(data_dir, "profile.json")))
    env = {**os.environ, "MOAT_PROFILE": os.path.join(data_dir, "profile.json")}
    reg_yml = os.path.join(scratch_dir, "r.yml")
    with open(reg_yml, "w") as f:
        f.write(f"name: {registry}\nlocation: eastus\n")
    reg = json.loads(subprocess.check_output([moat_bin, "registry", "create", "--file", reg_yml], env=env))
    sa_id = reg["properties"]["regionDetails"][0]["storageAccountDetails"][0]["systemCreatedStorageAccount"]["armResourceId"]["resourceId"]
    account = sa_id.rsplit("/", 1)[1]
    token = json.loads(subprocess.check_output([moat_bin, "account", "get-access-token"], env=env))["accessToken"]
    expiry = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    req = urllib.request.Request(
        f"{profile['endpoint']}{sa_id}/ListServiceSas?api-version=2025-09-01",
        data=json.dumps({"canonicalizedResource": f"/blob/{account}/{container}", "signedResource": "c",
                         "signedPermission": "racwdl", "signedExpiry": expiry}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, method="POST")
    sas = json.load(urllib.request.urlopen(req))["serviceSasToken"]
    return profile["endpoint"], env, account, sas
