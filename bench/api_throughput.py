#!/usr/bin/env python3
"""Registry API throughput: moat (SQLite; PostgreSQL with one node and with two) against MLflow, same machine, same run.

Measures requests per second of two registry calls with wrk (Python clients cannot reach
20,000 req/s), each server started afresh, one after the other:

  - get model version (read): moat `GET {registry}/models/m/versions/1` (a model version
    uploaded once in setup by `moat model create`), MLflow
    `GET /api/2.0/mlflow/model-versions/get?name=m&version=1`;
  - create version (write), every request a NEW version: moat
    `PUT {registry}/components/c/versions/{node}.{thread}.{n}` (a per-thread counter and a thread
    id set in wrk's setup(), so no two requests name the same version; each must answer 201
    Created, not 200 for a replacement), MLflow `POST /api/2.0/mlflow/model-versions/create`
    with `{"name":"m","source":"s3://bench/m"}` (MLflow numbers the versions itself).
    Why components on moat's side: a moat model version carries verified bytes (its files are
    uploaded, sha256-checked and committed before the version exists: startPendingUpload, blob
    upload, commit), while MLflow's create-with-source records a URI and uploads nothing. A
    component version is moat's metadata-only version (one document in the store, with its
    authorization, validation and audit), the fair equivalent of MLflow's call.

Servers, each on a free 127.0.0.1 port, in its own temporary directory:

  - moat on SQLite (its default): `moat serve --listen 127.0.0.1:P --data-dir DIR`;
  - moat on PostgreSQL, one node, then two nodes on one database (node B: the same
    MOAT_DATABASE_URL, MOAT_PUBLIC_URL = node A's URL, node A's profile.json in its own data
    directory), the load split across both by two wrk processes run at once, each with half the
    threads and connections. The PostgreSQL is a throwaway cluster started here as
    scripts/postgres-for-tests.sh does (initdb --locale=C, trust on 127.0.0.1 only; as the
    `postgres` user when run as root), with a fresh C-collation database per row;
  - MLflow 3.17.2, `mlflow server --backend-store-uri sqlite:///DIR/mlflow.db --workers W
    --gunicorn-opts ...`, W = nproc. Gunicorn, because with the default uvicorn server a
    request on a kept-alive connection takes ~70 ms where a fresh connection takes ~15 (wrk
    keeps connections alive). mlflow 3.17.2 appends its own `-w` (default 4) after
    --gunicorn-opts, so the worker count goes through mlflow's --workers, not the gunicorn
    options; gunicorn 26's control socket in ~/.gunicorn is turned off (--no-control-socket).
    MLFLOW_DISABLE_TELEMETRY=true, and MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false so that its job
    runner (four huey consumers) does not run beside the server. Gunicorn's sync workers close
    the connection after each response, so wrk reconnects for every MLflow request.

moat serves plain HTTP (MOAT_TLS=false; MLflow serves plain HTTP too) and is called with a
management token for its administrator (the client credentials in profile.json). It runs with
MOAT_LOG=warn by default (at info it logs a line per request; gunicorn keeps no access log by
default). Before each measured run a short warm-up run (discarded); each call is
first tried once and its status and answer checked. A request counts as an error when wrk sees a
socket error, a status ≥ 400 (wrk's own count) or a timeout (--timeout, default 5 s); creates
(and reads too with --count-statuses, which costs wrk some CPU per response) also count every
status in Lua, and anything but the expected one (moat 201, MLflow 200) is an error. wrk counts
only finished requests, so a request that hangs past the end of a run shows nowhere: a run in
which fewer requests finished than there are connections is reported as STALLED, with the
missing ones as errors (too short a run for a slow server trips it too). MLflow's create count
is checked against the versions the model has afterwards. Errors are printed in the table and
loudly on stderr, and make the script exit 1.

Every row runs --runs times (default 3), the rounds alternating the order of the rows (moat
first, then MLflow first, ...), each round on freshly started servers. The table shows each
row's median round (get and create separately) and the ratios of those medians; every round's
numbers and the round-by-round ratio of moat's get to MLflow's follow it, since one round of
each on a shared machine can swing a ratio by a third.

Also reported: latency p50/p99 from wrk, the CPU time the servers (moat, PostgreSQL, MLflow
with its workers) and wrk used during each measured run in cores, moat's RSS, nproc and the load
average before the run (other work on the machine skews every number).

    python3 bench/api_throughput.py [--runs 3] [--duration 10] [--connections 32] [--threads 2] [--warmup 2]
                                    [--only moat-sqlite,moat-pg,moat-pg2,mlflow]
                                    [--moat target/release/moat] [--mlflow PATH] [--keep]

Needs: `cargo build --release`; wrk (Debian: apt-get install wrk); PostgreSQL's server binaries
(Debian: apt-get install postgresql) for the PostgreSQL rows; MLflow 3.17.2, installed with pip
into a virtualenv in ~/.cache/moat-bench/mlflow-3.17.2 when --mlflow is not given (it brings
gunicorn). Everything listens on 127.0.0.1 only, and everything started is stopped at the end.
"""
import argparse
import datetime
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from benchlib import free_port, rss_kib, version

HERE = os.path.dirname(os.path.abspath(__file__))
API = "api-version=2025-09-01"
MLFLOW_VERSION = "3.17.2"
MLFLOW_VENV = os.path.expanduser(f"~/.cache/moat-bench/mlflow-{MLFLOW_VERSION}")
COMPONENT = {"properties": {"componentSpec": {"name": "c", "type": "command", "command": "echo hi"}}}
ROWS = ["moat-sqlite", "moat-pg", "moat-pg2", "mlflow"]
TARGET_GET, TARGET_CREATE, TARGET_RATIO = 20_000, 1_000, 100


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def tree_cpu(roots):
    """CPU seconds (user + system, with reaped children's) of `roots` and all their descendants."""
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # rest[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
        procs[int(d)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
    children = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, todo, seen = 0, [r for r in roots if r in procs], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += procs[pid][1]
        todo.extend(children.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


def request(method, url, token=None, body=None, form=None):
    headers, data = {}, None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def expect(what, got, status):
    if got[0] != status:
        raise RuntimeError(f"{what}: expected {status}, got {got[0]}: {str(got[1])[:1000]}")
    return got[1]


def run(cmd, what, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed ({p.returncode}): {(p.stderr or p.stdout).strip()[-2000:]}")
    return p.stdout


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


class Proc:
    """A started server process: its URL, log, and how to stop it (its process group for MLflow)."""

    def __init__(self, name, proc, url, log_path, group=False):
        self.name, self.proc, self.url, self.log, self.group = name, proc, url, log_path, group

    def stop(self):
        if self.proc.poll() is not None:
            return
        send = (lambda s: os.killpg(self.proc.pid, s)) if self.group else self.proc.send_signal
        try:
            send(signal.SIGTERM)
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        if self.group:  # gunicorn's workers may outlive the mlflow process that started them
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ---------------------------------------------------------------- moat


def start_moat(moat_bin, data, name, env_extra, moat_log, port=None):
    os.makedirs(data, exist_ok=True)
    port = port or free_port()
    out_path, log_path = data + ".stdout", data + ".log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOAT_")}
    # Plain HTTP, as MLflow serves it. MOAT_TLS=false works with binaries from before and after
    # TLS became the default (an older `--tls` flag takes no value, so `--tls=false` fails there).
    env.update({"MOAT_LOG": moat_log, "MOAT_TLS": "false", **env_extra})
    with open(out_path, "w") as out, open(log_path, "w") as err:
        proc = subprocess.Popen([moat_bin, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data],
                                stdout=out, stderr=err, env=env)
    p = Proc(name, proc, f"http://127.0.0.1:{port}", log_path)
    end = time.time() + 60
    while time.time() < end:
        if "moat listening on " in open(out_path).read():
            return p
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    p.stop()
    raise RuntimeError(f"{name} did not report readiness; its log:\n{tail(log_path)}{tail(out_path)}")


def moat_token(url, profile):
    body = expect("token", request("POST", f"{url}/{profile['tenantId']}/oauth2/v2.0/token", form={
        "grant_type": "client_credentials", "client_id": profile["clientId"],
        "client_secret": profile["clientSecret"]}), 200)
    return body["access_token"]


def moat_setup(moat_bin, node, workdir):
    """Registry `bench`, model m version 1 (uploaded by the CLI), one component version; the
    paths and the token the wrk scripts use."""
    profile_path = os.path.join(workdir, "a", "profile.json")
    with open(profile_path) as f:
        profile = json.load(f)
    token = moat_token(node.url, profile)
    reg = (f"/subscriptions/{profile['subscriptionId']}/resourceGroups/default/providers/"
           f"Microsoft.MachineLearningServices/registries/bench")
    expect("PUT registry", request("PUT", f"{node.url}{reg}?{API}", token,
                                   {"location": "eastus", "properties": {}}), 201)
    os.makedirs(os.path.join(workdir, "model"), exist_ok=True)
    with open(os.path.join(workdir, "model", "weights.bin"), "wb") as f:
        f.write(os.urandom(4096))
    with open(os.path.join(workdir, "model.yml"), "w") as f:
        f.write("name: m\nversion: 1\npath: ./model\n")
    env = {k: v for k, v in os.environ.items() if k != "MOAT_PROFILE"}
    env["MOAT_STATE_DIR"] = os.path.join(workdir, "cli-state")
    run([moat_bin, "--profile", profile_path, "model", "create", "--file", "model.yml", "--registry-name", "bench"],
        "moat model create", cwd=workdir, env=env)
    get_path = f"{reg}/models/m/versions/1?{API}"
    got = expect("GET model version", request("GET", node.url + get_path, token), 200)
    if got.get("name") != "1" or not got["properties"].get("files"):
        raise RuntimeError(f"GET model version: unexpected answer {got}")
    expect("PUT component version", request("PUT", f"{node.url}{reg}/components/c/versions/setup?{API}",
                                             token, COMPONENT), 201)
    return {"token": token, "get": get_path, "create_prefix": f"{reg}/components/c/versions/",
            "create_suffix": f"?{API}"}


# ---------------------------------------------------------------- PostgreSQL


class Postgres:
    """A throwaway cluster on a free loopback port, as scripts/postgres-for-tests.sh starts it."""

    def __init__(self, workdir, bin_dir=None):
        if not bin_dir:
            dirs = sorted((d for d in os.listdir("/usr/lib/postgresql") if d.isdigit()), key=int) \
                if os.path.isdir("/usr/lib/postgresql") else []
            if not dirs:
                raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql), or pass --pg-bin")
            bin_dir = f"/usr/lib/postgresql/{dirs[-1]}/bin"
        self.bin, self.dir, self.port = bin_dir, os.path.join(workdir, "pg"), free_port()
        os.makedirs(self.dir)
        self.root = os.getuid() == 0
        if self.root:
            shutil.chown(self.dir, "postgres")
            os.chmod(workdir, 0o755)
        self.sh(f"{self.q('initdb')} -D {shlex.quote(self.dir + '/data')} --locale=C -E UTF8 -A trust -U postgres",
                "initdb")
        opts = f"-p {self.port} -h 127.0.0.1 -k {self.dir}"
        self.sh(f"{self.q('pg_ctl')} -D {shlex.quote(self.dir + '/data')} -o {shlex.quote(opts)} "
                f"-l {shlex.quote(self.dir + '/server.log')} -w start", "pg_ctl start")
        self.admin = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        self.version = run([os.path.join(bin_dir, "postgres"), "--version"], "postgres --version").strip()

    def q(self, tool):
        return shlex.quote(os.path.join(self.bin, tool))

    def sh(self, cmd, what):
        argv = ["su", "postgres", "-s", "/bin/sh", "-c", cmd] if self.root else ["sh", "-c", cmd]
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"{what} failed: {p.stdout[-2000:]}{tail(self.dir + '/server.log')}")

    def pids(self):
        try:
            with open(os.path.join(self.dir, "data", "postmaster.pid")) as f:
                return [int(f.readline())]
        except (OSError, ValueError):
            return []

    def database(self, name):
        run([os.path.join(self.bin, "psql"), self.admin, "-v", "ON_ERROR_STOP=1", "-q", "-c",
             f"CREATE DATABASE {name} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"], "CREATE DATABASE")
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self):
        try:
            self.sh(f"{self.q('pg_ctl')} -D {shlex.quote(self.dir + '/data')} -m fast -w stop", "pg_ctl stop")
        except RuntimeError as e:
            log(str(e))


# ---------------------------------------------------------------- MLflow


def mlflow_binary(given):
    if given:
        return os.path.abspath(given)
    exe = os.path.join(MLFLOW_VENV, "bin", "mlflow")
    if not os.path.exists(exe):
        log(f"installing mlflow=={MLFLOW_VERSION} into {MLFLOW_VENV} (a few minutes)")
        subprocess.check_call([sys.executable, "-m", "venv", MLFLOW_VENV])
        subprocess.check_call([os.path.join(MLFLOW_VENV, "bin", "pip"), "install", "-q", f"mlflow=={MLFLOW_VERSION}"])
    return exe


def start_mlflow(exe, workdir, workers, gunicorn_opts):
    port = free_port()
    gunicorn = os.path.join(os.path.dirname(exe), "gunicorn")
    opts = gunicorn_opts
    # gunicorn 26 opens a control socket in ~/.gunicorn unless told not to.
    if os.path.exists(gunicorn) and "--no-control-socket" in run([gunicorn, "--help"], "gunicorn --help"):
        opts = f"{opts} --no-control-socket".strip()
    cmd = [exe, "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{workdir}/mlflow.db",
           "--artifacts-destination", os.path.join(workdir, "mlartifacts"),
           "--workers", str(workers), "--gunicorn-opts", opts]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log_path = os.path.join(workdir, "mlflow.log")
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir,
                                start_new_session=True)
    p = Proc("mlflow", proc, f"http://127.0.0.1:{port}", log_path, group=True)
    p.cmd = cmd
    end = time.time() + 180
    while time.time() < end:
        if proc.poll() is not None:
            break
        try:
            if request("GET", f"{p.url}/health")[0] == 200:
                return p
        except OSError:
            pass
        time.sleep(0.5)
    p.stop()
    raise RuntimeError(f"mlflow did not start; its log:\n{tail(log_path)}")


def mlflow_setup(node):
    api = f"{node.url}/api/2.0/mlflow"
    expect("MLflow registered-models/create", request("POST", f"{api}/registered-models/create", body={"name": "m"}), 200)
    got = expect("MLflow model-versions/create", request("POST", f"{api}/model-versions/create",
                                                         body={"name": "m", "source": "s3://bench/m"}), 200)
    if got["model_version"]["version"] != "1":
        raise RuntimeError(f"MLflow: first version is {got}")
    expect("MLflow model-versions/get", request("GET", f"{api}/model-versions/get?name=m&version=1"), 200)
    return {"token": None, "get": "/api/2.0/mlflow/model-versions/get?name=m&version=1",
            "create": "/api/2.0/mlflow/model-versions/create"}


def mlflow_versions(node):
    """How many versions model m has (MLflow numbers them 1, 2, ...: the latest is the count)."""
    got = expect("MLflow registered-models/get",
                 request("GET", f"{node.url}/api/2.0/mlflow/registered-models/get?name=m"), 200)
    return max(int(v["version"]) for v in got["registered_model"].get("latest_versions", []))


# ---------------------------------------------------------------- wrk

LUA = r"""-- written by bench/api_throughput.py
local threads, n = {}, 0
function setup(thread)
  n = n + 1
  thread:set("tid", n)
  table.insert(threads, thread)
end

wrk.method = %(method)s
%(headers)s
%(body)s

function init(args)
  node = args[1] or "1"
  counter = 0
  statuses = {}
end
%(request)s
%(response)s
function done(summary, latency, requests)
  local agg = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then
      for k, v in pairs(s) do agg[k] = (agg[k] or 0) + v end
    end
  end
  local parts = {}
  for k, v in pairs(agg) do table.insert(parts, string.format('"%%d":%%d', k, v)) end
  local e = summary.errors
  io.write(string.format('BENCHJSON {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"p50_us":%%d,"p99_us":%%d,"statuses":{%%s}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50.0), latency:percentile(99.0), table.concat(parts, ",")))
end
"""


def lua_str(s):
    s = json.dumps(s)
    assert s.isascii()
    return s


def write_lua(path, method, token=None, body=None, prefix=None, suffix="", count=False):
    """A wrk script: a fixed request, or with `prefix` a new path per request
    (prefix .. node .. "." .. thread .. "." .. n .. suffix); with `count`, every status counted."""
    headers = []
    if token:
        headers.append(f'wrk.headers["Authorization"] = {lua_str("Bearer " + token)}')
    if body is not None:
        headers.append('wrk.headers["Content-Type"] = "application/json"')
    req = ""
    if prefix is not None:
        req = (f"function request()\n  counter = counter + 1\n"
               f"  return wrk.format(nil, {lua_str(prefix)} .. node .. \".\" .. tid .. \".\" .. counter .. {lua_str(suffix)})\n"
               f"end\n")
    resp = ("function response(status, headers, body)\n  statuses[status] = (statuses[status] or 0) + 1\nend\n"
            if count else "")
    with open(path, "w") as f:
        f.write(LUA % {"method": lua_str(method), "headers": "\n".join(headers),
                       "body": f"wrk.body = {lua_str(json.dumps(body))}" if body is not None else "",
                       "request": req, "response": resp})
    return path


def wrk(urls, script, args, seconds, nodes, expected=None):
    """Runs one wrk per URL at once (threads and connections split between them); the summed
    rate and the errors. `nodes` names each wrk's versions (the Lua script's args[1])."""
    k = len(urls)
    t, c = max(1, args.threads // k), max(1, args.connections // k)
    procs = [subprocess.Popen(["wrk", f"-t{t}", f"-c{c}", f"-d{seconds}s", f"--timeout={args.timeout}s", "-s", script,
                               url, "--", node], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for url, node in zip(urls, nodes)]
    outs = [p.communicate() for p in procs]
    res = {"rate": 0.0, "requests": 0, "errors": 0, "detail": [], "p50": 0.0, "p99": 0.0}
    for p, (out, err) in zip(procs, outs):
        m = re.search(r"^BENCHJSON (.*)$", out, re.M)
        if p.returncode != 0 or not m:
            raise RuntimeError(f"wrk failed ({p.returncode}): {err.strip()}\n{out.strip()}")
        r = json.loads(m.group(1))
        res["rate"] += r["requests"] / (r["duration_us"] / 1e6)
        res["requests"] += r["requests"]
        sock = r["connect"] + r["read"] + r["write"] + r["timeout"]
        bad = r["status"]
        if expected is not None and r["statuses"]:
            bad = sum(v for s, v in r["statuses"].items() if int(s) != expected)
            if sum(r["statuses"].values()) != r["requests"]:
                res["detail"].append(f"{r['requests']} requests but {sum(r['statuses'].values())} statuses counted")
                bad += abs(r["requests"] - sum(r["statuses"].values()))
        res["errors"] += sock + bad
        if r["requests"] < c:
            # wrk reports only finished requests: one that hangs past the end of the run is
            # counted nowhere, so a run where some connection never finished one is a stall.
            res["errors"] += c - r["requests"]
            res["detail"].append(f"STALLED: only {r['requests']} requests finished on {c} connections in "
                                 f"{r['duration_us'] / 1e6:.0f} s (requests hung; see the server log)")
        if sock:
            res["detail"].append(f"socket errors: connect {r['connect']}, read {r['read']}, write {r['write']}, "
                                 f"timeout {r['timeout']}")
        if bad:
            res["detail"].append(f"{bad} unexpected statuses: {r['statuses'] or str(r['status']) + ' ≥ 400'}")
        # p50: weighted by requests; p99: the worse of the wrk processes.
        res["p50"] += r["p50_us"] / 1000 * r["requests"]
        res["p99"] = max(res["p99"], r["p99_us"] / 1000)
    res["p50"] /= max(1, res["requests"])
    return res


def measure(label, server_pids, urls, script, args, nodes, expected):
    """A warm-up run, then the measured run, with the CPU the servers and wrk used during it."""
    warm = {"requests": 0}
    if args.warmup > 0:
        warm = wrk(urls, script, args, args.warmup, ["w" + n for n in nodes], expected)
        if warm["errors"]:
            log(f"  (warm-up of {label}, not counted: {'; '.join(warm['detail'])})")
    cpu0 = {k: tree_cpu(p()) for k, p in server_pids.items()}
    wrk0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = wrk(urls, script, args, args.duration, nodes, expected)
    wall = time.perf_counter() - t0
    wrk1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res["cpu"] = {k: (tree_cpu(p()) - cpu0[k]) / wall for k, p in server_pids.items()}
    res["cpu"]["wrk"] = (wrk1.ru_utime + wrk1.ru_stime - wrk0.ru_utime - wrk0.ru_stime) / wall
    res["warm_requests"] = warm["requests"]
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in res["cpu"].items())
    log(f"  {label}: {res['rate']:,.0f}/s, p50 {res['p50']:.1f} ms, p99 {res['p99']:.1f} ms, "
        f"{res['errors']} errors; CPU cores: {cpu}")
    if res["errors"]:
        log(f"  !!! {label}: {res['errors']} ERRORS: {'; '.join(res['detail'])}")
    return res


# ---------------------------------------------------------------- rows


def row_moat(args, name, tmpdir, pg=None, run_no=1):
    """moat on SQLite (pg None), or on PostgreSQL with one node (moat-pg) or two (moat-pg2)."""
    workdir = os.path.join(tmpdir, f"{name}-{run_no}")
    os.makedirs(workdir)
    env = {}
    if pg:
        env["MOAT_DATABASE_URL"] = pg.database(f"{name.replace('-', '_')}_{run_no}")
    nodes = [start_moat(args.moat, os.path.join(workdir, "a"), f"{name} node A", env, args.moat_log)]
    try:
        if name == "moat-pg2":
            os.makedirs(os.path.join(workdir, "b"))
            shutil.copy(os.path.join(workdir, "a", "profile.json"), os.path.join(workdir, "b", "profile.json"))
            nodes.append(start_moat(args.moat, os.path.join(workdir, "b"), f"{name} node B",
                                    {**env, "MOAT_PUBLIC_URL": nodes[0].url}, args.moat_log))
        rss0 = [rss_kib(n.proc.pid, "VmRSS:") for n in nodes]
        s = moat_setup(args.moat, nodes[0], workdir)
        for n in nodes[1:]:  # node B serves what node A created, with node A's token
            expect(f"GET model version through {n.name}", request("GET", n.url + s["get"], s["token"]), 200)
            expect(f"PUT component version through {n.name}",
                   request("PUT", f"{n.url}{s['create_prefix']}setup-b{s['create_suffix']}", s["token"], COMPONENT), 201)
        pids = {"moat": lambda: [n.proc.pid for n in nodes]}
        if pg:
            pids["postgres"] = pg.pids
        get_lua = write_lua(os.path.join(workdir, "get.lua"), "GET", s["token"], count=args.count_statuses)
        create_lua = write_lua(os.path.join(workdir, "create.lua"), "PUT", s["token"], COMPONENT,
                               s["create_prefix"], s["create_suffix"], count=True)
        labels = ["a", "b"][:len(nodes)] if len(nodes) > 1 else ["1"]
        out = {"get": measure(f"{name} get", pids, [n.url + s["get"] for n in nodes], get_lua, args, labels,
                              200 if args.count_statuses else None),
               "create": measure(f"{name} create", pids, [n.url + "/" for n in nodes], create_lua, args, labels, 201)}
        out["rss"] = [(rss_kib(n.proc.pid, "VmRSS:") / 1024, rss_kib(n.proc.pid, "VmHWM:") / 1024, r0 / 1024)
                      for n, r0 in zip(nodes, rss0)]
        for n in nodes:
            if n.proc.poll() is not None:
                raise RuntimeError(f"{n.name} exited during the run; its log:\n{tail(n.log)}")
        return out
    except BaseException:
        for n in nodes:
            log(f"--- last lines of {n.log}:\n{tail(n.log)}")
        raise
    finally:
        for n in nodes:
            n.stop()


def row_mlflow(args, tmpdir, run_no=1):
    workdir = os.path.join(tmpdir, f"mlflow-{run_no}")
    os.makedirs(workdir)
    t0 = time.perf_counter()
    node = start_mlflow(args.mlflow, workdir, args.mlflow_workers, args.mlflow_gunicorn_opts)
    log(f"  mlflow started in {time.perf_counter() - t0:.0f} s: {shlex.join(node.cmd[1:])}")
    try:
        s = mlflow_setup(node)
        pids = {"mlflow": lambda: [node.proc.pid]}
        get_lua = write_lua(os.path.join(workdir, "get.lua"), "GET", count=args.count_statuses)
        create_lua = write_lua(os.path.join(workdir, "create.lua"), "POST", body={"name": "m", "source": "s3://bench/m"},
                               count=True)
        before = mlflow_versions(node)
        out = {"get": measure("mlflow get", pids, [node.url + s["get"]], get_lua, args, ["1"],
                              200 if args.count_statuses else None),
               "create": measure("mlflow create", pids, [node.url + s["create"]], create_lua, args, ["1"], 200)}
        # Every 200 from create made a version (plus those still in flight when a wrk run stopped).
        made = mlflow_versions(node) - before
        counted = out["create"]["requests"] + out["create"]["warm_requests"]
        if not counted <= made <= counted + 2 * args.connections:
            out["create"]["errors"] += 1
            out["create"]["detail"].append(f"{counted} creates answered 200 but {made} versions exist")
        return out
    except BaseException:
        log(f"--- last lines of {node.log}:\n{tail(node.log)}")
        raise
    finally:
        node.stop()


# ---------------------------------------------------------------- report


def median_run(runs, kind):
    """The run whose `kind` rate is the median (the lower middle one of an even number)."""
    ordered = sorted(runs, key=lambda r: r[kind]["rate"])
    return ordered[(len(ordered) - 1) // 2][kind]


def fmt_rate(r):
    if r is None:
        return "–"
    s = f"{r['rate']:,.0f}"
    return s + (f" **({r['errors']} ERRORS)**" if r["errors"] else "")


def fmt_lat(r):
    return f"{r['p50']:.1f} / {r['p99']:.1f}" if r else "–"


def fmt_cpu(r):
    return " + ".join(f"{k} {v:.2f}" for k, v in r["cpu"].items()) if r else "–"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds of each measured wrk run (default 10)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (split across nodes), default 32")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (split across nodes), default 2")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of the discarded warm-up run before each (0: none)")
    ap.add_argument("--timeout", type=int, default=5,
                    help="wrk's per-request timeout in seconds: a slower request is an error (default 5)")
    ap.add_argument("--only", default=",".join(ROWS), help=f"comma-separated rows among {','.join(ROWS)}")
    ap.add_argument("--runs", type=int, default=3,
                    help="rounds of every row, in alternating order; the table shows each row's median (default 3)")
    ap.add_argument("--count-statuses", action="store_true",
                    help="count every status of the reads in Lua too (creates always are); costs wrk CPU")
    ap.add_argument("--moat", default=os.path.join(HERE, "..", "target", "release", "moat"))
    ap.add_argument("--moat-log", default="warn", help="MOAT_LOG for the servers (default warn; info logs each request)")
    ap.add_argument("--pg-bin", help="PostgreSQL's bin directory (default: the newest /usr/lib/postgresql/*/bin)")
    ap.add_argument("--mlflow", help=f"an mlflow {MLFLOW_VERSION} executable (default: installed into {MLFLOW_VENV})")
    ap.add_argument("--mlflow-workers", type=int, default=os.cpu_count(), help="gunicorn workers (default: nproc)")
    ap.add_argument("--mlflow-gunicorn-opts", default="", help="more gunicorn options (e.g. '-k gthread --threads 4')")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    a.moat = os.path.abspath(a.moat)
    rows = [r.strip() for r in a.only.split(",") if r.strip()]
    if not rows or any(r not in ROWS for r in rows):
        ap.error(f"--only takes rows among {','.join(ROWS)}")
    if a.runs < 1 or a.duration < 1 or a.connections < 1 or a.threads < 1 or a.connections < a.threads:
        ap.error("--runs, --duration, --threads and --connections must be at least 1, and connections ≥ threads")
    if not shutil.which("wrk"):
        ap.error("wrk is not installed (Debian: apt-get install wrk)")
    if any(r.startswith("moat") for r in rows) and not os.access(a.moat, os.X_OK):
        ap.error(f"no moat binary at {a.moat} (cargo build --release)")
    if "mlflow" in rows:
        a.mlflow = mlflow_binary(a.mlflow)
        mv = version([a.mlflow, "--version"])
        if MLFLOW_VERSION not in mv:
            log(f"warning: {a.mlflow} is {mv!r}, not mlflow {MLFLOW_VERSION}")

    load = os.getloadavg()
    tmpdir = tempfile.mkdtemp(prefix="moat-api-bench-")
    runs, pg = {r: [] for r in rows}, None
    try:
        # Rounds alternate the order of the rows, so that neither side always runs first (or
        # last, on a machine that warms up or slows down).
        for n in range(1, a.runs + 1):
            for r in rows if n % 2 else list(reversed(rows)):
                log(f"{r} (round {n} of {a.runs}):")
                if r.startswith("moat-pg") and pg is None:
                    pg = Postgres(tmpdir, a.pg_bin)
                runs[r].append(row_mlflow(a, tmpdir, n) if r == "mlflow"
                               else row_moat(a, r, tmpdir, pg if r != "moat-sqlite" else None, n))
    finally:
        if pg:
            pg.stop()
        if a.keep:
            log(f"kept {tmpdir}")
        else:
            shutil.rmtree(tmpdir, ignore_errors=True)

    cmd = "python3 bench/api_throughput.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    errors = sum(x[k]["errors"] for rs in runs.values() for x in rs for k in ("get", "create"))
    # Each row's median get and median create (of the rounds); RSS of the round with the highest peak.
    results = {r: {"get": median_run(rs, "get"), "create": median_run(rs, "create"),
                   "rss": max((x["rss"] for x in rs if "rss" in x), key=lambda v: max(p for _, p, _ in v), default=None)}
               for r, rs in runs.items()}
    print(f"Date: {datetime.date.today().isoformat()}. Command: `{cmd.strip()}`.")
    print(f"Machine: {os.cpu_count()} vCPU (nproc), load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
          f"before the run; server and wrk share the machine. {version(['wrk', '-v']).split(' [')[0]}"
          + (f"; {pg.version}" if pg else "")
          + (f"; mlflow {MLFLOW_VERSION} with {version([os.path.join(os.path.dirname(a.mlflow), 'gunicorn'), '--version'])}"
             if "mlflow" in results else "") + ".\n")
    if errors:
        print(f"**WARNING: {errors} requests FAILED during the measured runs: the rows marked ERRORS are not valid "
              f"measurements.**\n")
    names = {"moat-sqlite": "moat, SQLite (default)", "moat-pg": "moat, PostgreSQL, 1 node",
             "moat-pg2": "moat, PostgreSQL, 2 nodes on one database (load split)",
             "mlflow": f"MLflow {MLFLOW_VERSION}, SQLite, gunicorn {a.mlflow_workers} workers"}
    short = {"moat-sqlite": "moat SQLite", "moat-pg": "moat PostgreSQL 1 node", "moat-pg2": "moat PostgreSQL 2 nodes"}
    print(f"| wrk -t{a.threads} -c{a.connections} -d{a.duration}s, median of {a.runs} | get model version req/s | create version /s "
          f"| get p50 / p99 ms | create p50 / p99 ms | CPU cores during get | CPU cores during create |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        g, c = results[r]["get"], results[r]["create"]
        print(f"| {names[r]} | {fmt_rate(g)} | {fmt_rate(c)} | {fmt_lat(g)} | {fmt_lat(c)} | {fmt_cpu(g)} | {fmt_cpu(c)} |")
    ml = results.get("mlflow")
    if ml:
        for r in [x for x in rows if x.startswith("moat")]:
            g, c = results[r]["get"]["rate"] / ml["get"]["rate"], results[r]["create"]["rate"] / ml["create"]["rate"]
            print(f"| {short[r]} / MLflow | {g:,.1f}x | {c:,.1f}x | | | | |")

    print("\nTargets:", end=" ")
    verdicts = []
    sq = results.get("moat-sqlite")
    if sq:
        verdicts.append(f"moat on SQLite get ≥ {TARGET_GET:,} req/s: {sq['get']['rate']:,.0f}, "
                        f"{'met' if sq['get']['rate'] >= TARGET_GET else 'NOT met'}")
        verdicts.append(f"create ≥ {TARGET_CREATE:,} versions/s: {sq['create']['rate']:,.0f}, "
                        f"{'met' if sq['create']['rate'] >= TARGET_CREATE else 'NOT met'}")
    if sq and ml:
        ratio = sq["get"]["rate"] / ml["get"]["rate"]
        verdicts.append(f"moat get ≥ {TARGET_RATIO}x MLflow get: {ratio:,.1f}x (medians), {'met' if ratio >= TARGET_RATIO else 'NOT met'}")
    print("; ".join(verdicts) + "." if verdicts else "not measured (needs the moat-sqlite row, and mlflow for the ratio).")
    print("\nEvery round (get req/s; create /s):")
    for r in rows:
        print(f"- {names[r]}: " + "; ".join(f"{x['get']['rate']:,.0f}, {x['create']['rate']:,.0f}" for x in runs[r]))
    if sq and ml:
        per = [x["get"]["rate"] / y["get"]["rate"] for x, y in zip(runs["moat-sqlite"], runs["mlflow"])]
        print(f"- moat SQLite get / MLflow get, round by round: {', '.join(f'{v:,.1f}x' for v in per)}")
    for r in rows:
        if r.startswith("moat"):
            rss = "; ".join(f"{now:.0f} MiB (peak {peak:.0f}, {start:.0f} at start)" for now, peak, start in results[r]["rss"])
            print(f"\nmoat RSS after the run, {names[r]}: {rss}.", end="")
    print()
    print(f"\nNotes: moat's create is a component version (metadata only: a moat model version carries "
          f"uploaded, sha256-verified bytes), MLflow's is model-versions/create with a source URI (nothing uploaded); "
          f"every create makes a new version, and moat's must answer 201. moat runs with MOAT_LOG={a.moat_log}, "
          f"plain HTTP and a bearer token; MLflow without authentication, gunicorn sync workers (one connection per request), "
          f"job execution off. CPU is cores used during the measured run "
          f"(server processes and their children; PostgreSQL separately; wrk itself). Errors: socket errors, "
          f"timeouts (> {a.timeout} s), stalls (a connection that finished no request), status ≥ 400, and for creates{' and reads' if a.count_statuses else ''} any status "
          f"but the expected one. {'No errors.' if not errors else f'{errors} ERRORS.'}")
    for r in rows:
        for n, x in enumerate(runs[r], 1):
            for k in ("get", "create"):
                res = x[k]
                if res["errors"]:
                    print(f"\n**{names[r]} {k}, round {n}: {res['errors']} ERRORS: {'; '.join(res['detail'])}**")
    if errors:
        log(f"!!! {errors} requests failed: see the table")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
