#!/usr/bin/env python3
"""Conformance checks for moat's container registry plane (docs/OCI.md, OCI Distribution v1.1).

Standard library only. Every request goes to --base; repositories are <prefix>/conf/<name>-<run>.

    oci_conformance.py --base http://127.0.0.1:PORT --prefix <acr> --password <moat access token>
                       [--reader-password <token of a pull-only principal>] [--skip referrers,...]
    oci_conformance.py --base http://127.0.0.1:5000 --prefix '' --no-auth --skip referrers,sha512

--skip takes check names or group names (--list shows both). Each check prints `PASS name`,
`FAIL name: reason` or `SKIP name: reason` on stderr; a JSON summary goes to stdout; the exit
code is 1 when any check failed.
"""
import argparse
import base64
import hashlib
import http.client
import json
import os
import re
import sys
import types
import urllib.parse

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
OCTET = {"Content-Type": "application/octet-stream"}
ANON_USER = "00000000-0000-0000-0000-000000000000"
SPEC_CODES = {
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
    "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
}
MIB = 1024 * 1024

# --------------------------------------------------------------------------- helpers

class Failed(Exception):
    """A check's assertion did not hold; the message is the reason printed after FAIL."""

def expect(cond, msg):
    if not cond:
        raise Failed(msg)

def digest_of(data, algo="sha256"):
    return f"{algo}:{hashlib.new(algo, data).hexdigest()}"

def jdump(obj):
    # Unusual indentation on purpose: the registry must store and serve the exact bytes.
    return json.dumps(obj, indent=3).encode()

def with_query(url, **params):
    return url + ("&" if "?" in url else "?") + urllib.parse.urlencode(params)

def path_of(url):
    return urllib.parse.urlsplit(url).path

def short(url, n=100):
    return url if len(url) <= n else url[: n - 40] + "..." + url[-37:]

def media(value):
    return (value or "").split(";")[0].strip()

class Resp:
    def __init__(self, method, url, status, headers, body):
        self.method, self.url, self.status, self.headers, self.body = method, url, status, headers, body

    def h(self, name):
        return self.headers.get(name)

    @property
    def what(self):
        return f"{self.method} {short(self.url)} -> {self.status}"

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise Failed(f"{self.what}: body is not JSON: {self.body[:160]!r}") from None

    def error_codes(self):
        try:
            return [e.get("code") for e in json.loads(self.body)["errors"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

def status(r, *codes):
    if r.status not in codes:
        codes_seen = r.error_codes()
        extra = f" {codes_seen}" if codes_seen else (f" {r.body[:160]!r}" if r.body else "")
        raise Failed(f"{r.what}, want {'/'.join(map(str, codes))}{extra}")
    return r

def error(r, statuses, codes):
    """Asserts an OCI error response: the status and {"errors":[{"code","message",...}]}."""
    statuses = statuses if isinstance(statuses, tuple) else (statuses,)
    codes = codes if isinstance(codes, tuple) else (codes,)
    status(r, *statuses)
    if r.method == "HEAD":
        return r
    body = r.json()
    errs = body.get("errors") if isinstance(body, dict) else None
    expect(isinstance(errs, list) and errs, f"{r.what}: no errors array in {r.body[:160]!r}")
    for e in errs:
        expect(isinstance(e, dict) and isinstance(e.get("code"), str), f"{r.what}: error without code: {e!r}")
        expect(isinstance(e.get("message"), str), f"{r.what}: error without message: {e!r}")
        expect(e["code"] in SPEC_CODES, f"{r.what}: {e['code']} is not one of the spec's error codes")
    got = [e["code"] for e in errs]
    expect(any(c in codes for c in got), f"{r.what}: error codes {got}, want {'/'.join(codes)}")
    return r

def header(r, name, want=None):
    v = r.h(name)
    expect(v is not None, f"{r.what}: no {name} header")
    expect(want is None or v == want, f"{r.what}: {name}: {v!r}, want {want!r}")
    return v

def content_digest(r, want):
    return header(r, "Docker-Content-Digest", want)

def no_body(r):
    expect(r.body == b"", f"{r.what}: HEAD answered with a {len(r.body)}-byte body")

def link_next(r):
    """The target of a `Link: <url>; rel="next"` header, or None."""
    v = r.h("Link")
    if not v:
        return None
    m = re.match(r'\s*<([^>]*)>\s*;\s*rel="?next"?', v)
    expect(m, f"{r.what}: malformed Link header {v!r}")
    return m.group(1)

# --------------------------------------------------------------------------- the client

class Client:
    """A tiny registry client: Bearer token exchange, token cache per scope, one retry on 401."""

    def __init__(self, base, password=None, no_auth=False, proactive=True, timeout=120, log=None):
        u = urllib.parse.urlsplit(base)
        expect(u.scheme in ("http", "https") and u.netloc, f"bad --base {base!r}")
        self.https, self.netloc = u.scheme == "https", u.netloc
        self.password, self.no_auth, self.proactive, self.timeout = password, no_auth, proactive, timeout
        self.realm = self.service = None
        self.tokens = {}
        self.api_version_misses = log if log is not None else []

    def send(self, method, url, headers=None, body=None):
        """One HTTP exchange with --base (the host of an absolute URL is ignored)."""
        u = urllib.parse.urlsplit(url)
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        conn = (http.client.HTTPSConnection if self.https else http.client.HTTPConnection)(
            self.netloc, timeout=self.timeout)
        try:
            if isinstance(body, list):  # a list of pieces goes out with Transfer-Encoding: chunked
                conn.request(method, path, body=iter(body), headers=headers or {}, encode_chunked=True)
            else:
                if body is None and method in ("POST", "PUT", "PATCH"):
                    body = b""
                conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            r = Resp(method, path, resp.status, resp.headers, resp.read())
        finally:
            conn.close()
        if u.path.startswith("/v2") and r.h("Docker-Distribution-API-Version") != "registry/2.0":
            self.api_version_misses.append(r.what)
        return r

    @staticmethod
    def challenge(r):
        v = r.h("WWW-Authenticate") or ""
        if not v.lower().startswith("bearer "):
            return None
        return dict(re.findall(r'(\w+)="([^"]*)"', v))

    def discover(self):
        """Learns realm and service from the unauthenticated /v2/ challenge."""
        ch = self.challenge(self.send("GET", "/v2/"))
        if ch and "realm" in ch:
            self.realm, self.service = ch["realm"], ch.get("service", "")

    def basic(self, password=None):
        raw = f"{ANON_USER}:{self.password if password is None else password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def token(self, scopes, realm=None, service=None):
        realm, service = realm or self.realm, self.service if service is None else service
        expect(realm, "no Bearer realm known (no challenge seen)")
        key = (realm, service, tuple(scopes))
        if key not in self.tokens:
            query = urllib.parse.urlencode([("service", service)] + [("scope", s) for s in scopes])
            r = self.send("GET", realm + ("&" if "?" in realm else "?") + query,
                          {"Authorization": self.basic()})
            expect(r.status == 200, f"token exchange for {scopes} answered {r.status}: {r.body[:160]!r}")
            body = r.json()
            tok = body.get("token") or body.get("access_token")
            expect(isinstance(tok, str) and tok, f"token exchange: no token in {body!r}")
            self.tokens[key] = tok
        return self.tokens[key]

    def request(self, method, url, repo=None, headers=None, body=None, scopes=None):
        hdrs = dict(headers or {})
        if "/manifests/" in url and method in ("GET", "HEAD"):
            hdrs.setdefault("Accept", ACCEPT)
        if scopes is None:
            scopes = [f"repository:{repo}:pull,push,delete"] if repo else []
        use_auth = not self.no_auth and "Authorization" not in hdrs
        if use_auth and self.proactive and self.realm:
            hdrs["Authorization"] = "Bearer " + self.token(scopes)
        r = self.send(method, url, hdrs, body)
        if r.status == 401 and use_auth:
            ch = self.challenge(r)
            if ch and "realm" in ch:
                want = ch.get("scope", "").split() or scopes
                hdrs["Authorization"] = "Bearer " + self.token(want, ch["realm"], ch.get("service", ""))
                r = self.send(method, url, hdrs, body)
        return r

# --------------------------------------------------------------------------- context and fixtures

class Ctx:
    def __init__(self, args, client):
        self.args, self.c = args, client
        self.prefix = args.prefix.strip("/")
        self.run = os.urandom(4).hex()
        self._fixture = None

    def repo(self, name):
        base = f"conf/{name}-{self.run}"
        return f"{self.prefix}/{base}" if self.prefix else base

    @staticmethod
    def url(repo, rest):
        return f"/v2/{repo}/{rest}"

    def req(self, method, repo, rest, **kw):
        return self.c.request(method, self.url(repo, rest), repo, **kw)

    def start_upload(self, repo):
        r = status(self.req("POST", repo, "blobs/uploads/", headers={"Content-Length": "0"}), 202)
        return header(r, "Location")

    def push_blob(self, repo, data, algo="sha256"):
        d = digest_of(data, algo)
        loc = self.start_upload(repo)
        r = self.c.request("PUT", with_query(loc, digest=d), repo, headers=OCTET, body=data)
        status(r, 201)
        return d

    def put_manifest(self, repo, ref, body, mt):
        return self.req("PUT", repo, f"manifests/{ref}", headers={"Content-Type": mt}, body=body)

    def push_manifest(self, repo, ref, body, mt):
        status(self.put_manifest(repo, ref, body, mt), 201)
        return types.SimpleNamespace(digest=digest_of(body), body=body, mt=mt)

    def push_image(self, repo, tag=None, docker=False, layer_size=1000, annotations=None):
        """Pushes a config and a layer, then a manifest (by tag, else by digest)."""
        layer = os.urandom(layer_size)
        config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                             "rootfs": {"type": "layers", "diff_ids": [digest_of(layer)]},
                             "config": {"Labels": {"run": self.run, "nonce": os.urandom(6).hex()}}}).encode()
        cfg_d, layer_d = self.push_blob(repo, config), self.push_blob(repo, layer)
        mt = DOCKER_MANIFEST if docker else OCI_MANIFEST
        doc = {"schemaVersion": 2, "mediaType": mt,
               "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG, "digest": cfg_d, "size": len(config)},
               "layers": [{"mediaType": DOCKER_LAYER if docker else OCI_LAYER, "digest": layer_d, "size": len(layer)}]}
        if annotations:
            doc["annotations"] = annotations
        body = jdump(doc)
        img = self.push_manifest(repo, tag or digest_of(body), body, mt)
        img.config, img.layer, img.layer_digest, img.config_digest = config, layer, layer_d, cfg_d
        return img

    def fixture(self):
        """One OCI image tagged v1 in conf/base, shared by the pull, error and reader checks."""
        if self._fixture is None:
            try:
                repo = self.repo("base")
                img = self.push_image(repo, "v1")
                img.repo = repo
                self._fixture = img
            except Exception as e:  # noqa: BLE001 - remembered and reported by every user
                self._fixture = Failed(f"fixture image could not be pushed: {e}")
        if isinstance(self._fixture, Exception):
            raise self._fixture
        return self._fixture

CHECKS = []

def check(name, *groups, when=None):
    """Registers a check; `when(ctx)` returns a reason to skip it, or None."""
    def deco(fn):
        CHECKS.append(types.SimpleNamespace(name=name, groups={name, *groups}, fn=fn, when=when))
        return fn
    return deco

def needs_auth(ctx):
    return "--no-auth" if ctx.args.no_auth else None

def needs_reader(ctx):
    return "no --reader-password" if not ctx.args.reader_password else None

# --------------------------------------------------------------------------- base and auth

@check("base-v2", "base")
def _(ctx):
    r = status(ctx.c.request("GET", "/v2/"), 200)
    expect(r.json() == {}, f"{r.what}: body {r.body[:80]!r}, want {{}}")

@check("auth-challenge", "auth", when=needs_auth)
def _(ctx):
    r = error(ctx.c.send("GET", "/v2/"), 401, "UNAUTHORIZED")
    ch = Client.challenge(r)
    expect(ch is not None, f"{r.what}: WWW-Authenticate {r.h('WWW-Authenticate')!r} is not a Bearer challenge")
    expect(ch.get("realm", "").startswith(("http://", "https://")), f"challenge without an absolute realm: {ch}")
    expect("service" in ch, f"challenge without service: {ch}")

@check("auth-challenge-scope", "auth", when=needs_auth)
def _(ctx):
    repo = ctx.fixture().repo
    r = error(ctx.c.send("GET", ctx.url(repo, "tags/list")), 401, "UNAUTHORIZED")
    ch = Client.challenge(r) or {}
    expect(ch.get("scope") == f"repository:{repo}:pull", f"challenge scope {ch.get('scope')!r}, want pull on {repo}")
    r = ctx.c.send("POST", ctx.url(repo, "blobs/uploads/"))
    scope = (Client.challenge(r) or {}).get("scope", "")
    expect(r.status == 401 and "push" in scope, f"{r.what}: upload challenge scope {scope!r} lacks push")

@check("auth-token-get", "auth", when=needs_auth)
def _(ctx):
    c = ctx.c
    q = urllib.parse.urlencode({"service": c.service, "scope": f"repository:{ctx.repo('auth')}:pull"})
    r = status(c.send("GET", f"{c.realm}?{q}", {"Authorization": c.basic()}), 200)
    body = r.json()
    for key in ("access_token", "token"):
        expect(isinstance(body.get(key), str) and body[key], f"token answer lacks {key}: {list(body)}")
    expect(isinstance(body.get("expires_in"), int), f"token answer lacks expires_in: {list(body)}")
    r = status(c.send("GET", "/v2/", {"Authorization": "Bearer " + body["token"]}), 200)
    expect(r.json() == {}, f"{r.what}: body {r.body[:80]!r}")

@check("auth-token-post", "auth", when=needs_auth)
def _(ctx):
    c, scope = ctx.c, f"repository:{ctx.repo('auth')}:pull"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for grant in ({"grant_type": "password", "username": ANON_USER, "password": c.password},
                  {"grant_type": "refresh_token", "refresh_token": c.password}):
        body = urllib.parse.urlencode({**grant, "service": c.service, "scope": scope}).encode()
        r = status(c.send("POST", c.realm, form, body), 200)
        tok = r.json().get("access_token")
        expect(tok, f"{grant['grant_type']}: no access_token")
        status(c.send("GET", "/v2/", {"Authorization": "Bearer " + tok}), 200)

@check("auth-bad-password", "auth", when=needs_auth)
def _(ctx):
    c = ctx.c
    q = urllib.parse.urlencode({"service": c.service, "scope": f"repository:{ctx.repo('auth')}:pull"})
    error(c.send("GET", f"{c.realm}?{q}", {"Authorization": c.basic("not-a-token")}), 401, "UNAUTHORIZED")
    error(c.send("GET", "/v2/", {"Authorization": c.basic("not-a-token")}), 401, "UNAUTHORIZED")

@check("auth-direct-credentials", "auth", when=needs_auth)
def _(ctx):
    # No exchange: Basic with the access token as password, or the access token as Bearer.
    img = ctx.fixture()
    for cred in (ctx.c.basic(), "Bearer " + ctx.c.password):
        r = status(ctx.c.send("GET", ctx.url(img.repo, "manifests/v1"), {"Authorization": cred, "Accept": ACCEPT}), 200)
        expect(r.body == img.body, f"{r.what} ({cred.split()[0]}): wrong manifest bytes")

@check("auth-client-retry", "auth", when=needs_auth)
def _(ctx):
    # A client that knows nothing yet: 401, token for the challenge's scope, retry.
    img = ctx.fixture()
    fresh = Client(ctx.args.base, ctx.c.password, proactive=False, log=ctx.c.api_version_misses)
    r = status(fresh.request("GET", ctx.url(img.repo, "manifests/v1"), img.repo), 200)
    expect(r.body == img.body and fresh.tokens, f"{r.what}: no token was fetched or wrong bytes")

# --------------------------------------------------------------------------- pull

def check_manifest_response(r, img, head=False):
    status(r, 200)
    expect(media(r.h("Content-Type")) == img.mt, f"{r.what}: Content-Type {r.h('Content-Type')!r}, want {img.mt}")
    content_digest(r, img.digest)
    header(r, "Content-Length", str(len(img.body)))
    if head:
        no_body(r)
    else:
        expect(r.body == img.body, f"{r.what}: body differs from the pushed bytes")

def pull_manifest_check(method, by_digest):
    def run(ctx):
        img = ctx.fixture()
        ref = img.digest if by_digest else "v1"
        check_manifest_response(ctx.req(method, img.repo, f"manifests/{ref}"), img, head=method == "HEAD")
    return run

for _method in ("GET", "HEAD"):
    for _by in ("tag", "digest"):
        check(f"manifest-{_method.lower()}-by-{_by}", "pull")(pull_manifest_check(_method, _by == "digest"))

@check("blob-get", "pull")
def _(ctx):
    img = ctx.fixture()
    r = status(ctx.req("GET", img.repo, f"blobs/{img.layer_digest}"), 200)
    expect(r.body == img.layer, f"{r.what}: wrong blob bytes")
    content_digest(r, img.layer_digest)
    header(r, "Content-Length", str(len(img.layer)))

@check("blob-head", "pull")
def _(ctx):
    img = ctx.fixture()
    r = status(ctx.req("HEAD", img.repo, f"blobs/{img.layer_digest}"), 200)
    content_digest(r, img.layer_digest)
    header(r, "Content-Length", str(len(img.layer)))
    no_body(r)

@check("blob-get-range", "pull")
def _(ctx):
    img = ctx.fixture()
    size = len(img.layer)
    r = status(ctx.req("GET", img.repo, f"blobs/{img.layer_digest}", headers={"Range": "bytes=10-29"}), 206)
    header(r, "Content-Range", f"bytes 10-29/{size}")
    header(r, "Content-Length", "20")
    expect(r.body == img.layer[10:30], f"{r.what}: wrong bytes for the range")
    content_digest(r, img.layer_digest)
    r = status(ctx.req("GET", img.repo, f"blobs/{img.layer_digest}", headers={"Range": f"bytes={size - 5}-"}), 206)
    header(r, "Content-Range", f"bytes {size - 5}-{size - 1}/{size}")
    expect(r.body == img.layer[-5:], f"{r.what}: wrong bytes for the open range")

# --------------------------------------------------------------------------- uploads

@check("upload-post-session", "push")
def _(ctx):
    repo = ctx.repo("session")
    r = status(ctx.req("POST", repo, "blobs/uploads/", headers={"Content-Length": "0"}), 202)
    loc = header(r, "Location")
    expect(path_of(loc).startswith(f"/v2/{repo}/blobs/uploads/") and len(path_of(loc)) > len(f"/v2/{repo}/blobs/uploads/"),
           f"Location {loc!r} is not /v2/{repo}/blobs/uploads/<uuid>")
    header(r, "Range", "0-0")
    expect(header(r, "Docker-Upload-UUID") in loc, f"Docker-Upload-UUID {r.h('Docker-Upload-UUID')!r} not in {loc!r}")
    ctx.c.request("DELETE", loc, repo)

@check("upload-monolithic-post-put", "push")
def _(ctx):
    repo, data = ctx.repo("mono"), os.urandom(3000)
    d, loc = digest_of(data), ctx.start_upload(repo)
    r = status(ctx.c.request("PUT", with_query(loc, digest=d), repo, headers=OCTET, body=data), 201)
    expect(path_of(header(r, "Location")) == f"/v2/{repo}/blobs/{d}", f"Location {r.h('Location')!r}")
    content_digest(r, d)
    g = status(ctx.c.request("GET", r.h("Location"), repo), 200)
    expect(g.body == data, f"{g.what}: wrong bytes")

@check("upload-single-post", "push")
def _(ctx):
    repo, data = ctx.repo("single"), os.urandom(2000)
    d = digest_of(data)
    r = status(ctx.c.request("POST", with_query(ctx.url(repo, "blobs/uploads/"), digest=d), repo,
                             headers=OCTET, body=data), 201)
    expect(path_of(header(r, "Location")) == f"/v2/{repo}/blobs/{d}", f"Location {r.h('Location')!r}")
    content_digest(r, d)
    g = status(ctx.req("GET", repo, f"blobs/{d}"), 200)
    expect(g.body == data, f"{g.what}: wrong bytes")

def patch(ctx, repo, loc, chunk, start=None):
    hdrs = dict(OCTET, **{"Content-Length": str(len(chunk))})
    if start is not None:
        hdrs["Content-Range"] = f"{start}-{start + len(chunk) - 1}"
    return ctx.c.request("PATCH", loc, repo, headers=hdrs, body=chunk)

def expect_chunk_accepted(r, end):
    status(r, 202)
    header(r, "Range", f"0-{end}")
    return header(r, "Location")

def finish(ctx, repo, loc, data, body=None, headers=None):
    d = digest_of(data)
    r = status(ctx.c.request("PUT", with_query(loc, digest=d), repo, headers=headers, body=body), 201)
    expect(path_of(header(r, "Location")) == f"/v2/{repo}/blobs/{d}", f"Location {r.h('Location')!r}")
    content_digest(r, d)
    g = status(ctx.req("GET", repo, f"blobs/{d}"), 200)
    expect(g.body == data, f"{g.what}: stored bytes differ")

@check("upload-chunked", "push")
def _(ctx):
    repo, data = ctx.repo("chunked"), os.urandom(250)
    loc = ctx.start_upload(repo)
    loc = expect_chunk_accepted(patch(ctx, repo, loc, data[:100], 0), 99)
    loc = expect_chunk_accepted(patch(ctx, repo, loc, data[100:], 100), 249)
    finish(ctx, repo, loc, data)

@check("upload-chunked-last-in-put", "push")
def _(ctx):
    repo, data = ctx.repo("lastput"), os.urandom(300)
    loc = expect_chunk_accepted(patch(ctx, repo, ctx.start_upload(repo), data[:200], 0), 199)
    finish(ctx, repo, loc, data, body=data[200:],
           headers=dict(OCTET, **{"Content-Range": "200-299", "Content-Length": "100"}))

@check("upload-out-of-order-416", "push")
def _(ctx):
    repo, data = ctx.repo("order"), os.urandom(300)
    loc = expect_chunk_accepted(patch(ctx, repo, ctx.start_upload(repo), data[:100], 0), 99)
    r = status(patch(ctx, repo, loc, data[150:200], 150), 416)
    header(r, "Range", "0-99")
    # The session survives: the status says where to resume and the upload can finish.
    r = status(ctx.c.request("GET", loc, repo), 204)
    header(r, "Range", "0-99")
    loc = expect_chunk_accepted(patch(ctx, repo, header(r, "Location"), data[100:], 100), 299)
    finish(ctx, repo, loc, data)

@check("upload-out-of-order-last-in-put-416", "push")
def _(ctx):
    # The last chunk may come with the closing PUT; its Content-Range is checked as a PATCH's is.
    repo, data = ctx.repo("orderput"), os.urandom(300)
    loc = expect_chunk_accepted(patch(ctx, repo, ctx.start_upload(repo), data[:100], 0), 99)
    r = error(ctx.c.request("PUT", with_query(loc, digest=digest_of(data)), repo, body=data[200:],
                            headers=dict(OCTET, **{"Content-Range": "200-299", "Content-Length": "100"})),
              416, "BLOB_UPLOAD_INVALID")
    header(r, "Range", "0-99")
    header(r, "Location")
    # Nothing was appended and the session goes on from where it was.
    r = status(ctx.c.request("GET", loc, repo), 204)
    header(r, "Range", "0-99")
    finish(ctx, repo, header(r, "Location"), data, body=data[100:],
           headers=dict(OCTET, **{"Content-Range": "100-299", "Content-Length": "200"}))

@check("upload-bad-content-range-416", "push")
def _(ctx):
    repo, data = ctx.repo("badrange"), os.urandom(200)
    loc = expect_chunk_accepted(patch(ctx, repo, ctx.start_upload(repo), data[:100], 0), 99)
    for bad in ("100-", "bytes=a-b", "150-120"):
        r = error(ctx.c.request("PATCH", loc, repo, body=data[100:],
                                headers=dict(OCTET, **{"Content-Range": bad, "Content-Length": "100"})),
                  416, "BLOB_UPLOAD_INVALID")
        header(r, "Range", "0-99")
        header(r, "Location")
    # A Content-Range that covers another count of bytes than Content-Length.
    r = error(ctx.c.request("PATCH", loc, repo, body=data[100:],
                            headers=dict(OCTET, **{"Content-Range": "100-249", "Content-Length": "100"})),
              416, "BLOB_UPLOAD_INVALID")
    header(r, "Range", "0-99")
    finish(ctx, repo, expect_chunk_accepted(patch(ctx, repo, loc, data[100:], 100), 199), data)

@check("repository-names-with-keywords", "push", "pull")
def _(ctx):
    # A repository name may hold a segment named like an endpoint: the path's last segments,
    # not its first keyword, say which endpoint a request is for.
    for name in ("kw/manifests/x", "kw/blobs/y", "kw/blobs/uploads/z", "kw/tags/list/w", "kw/referrers/v"):
        repo = ctx.repo(name)
        img = ctx.push_image(repo, tag="t")
        check_manifest_response(ctx.req("GET", repo, "manifests/t"), img)
        g = status(ctx.req("GET", repo, f"blobs/{img.layer_digest}"), 200)
        expect(g.body == img.layer, f"{g.what}: wrong bytes")
        _, got = tags(ctx, repo, ctx.url(repo, "tags/list"))
        expect(got == ["t"], f"tags of {repo}: {got}")
        r = status(ctx.req("GET", repo, f"referrers/{img.digest}"), 200)
        expect(r.json().get("manifests") == [], f"{r.what}: {r.body[:120]!r}")

@check("upload-streamed", "push")
def _(ctx):
    repo, data = ctx.repo("streamed"), os.urandom(5000)
    loc = expect_chunk_accepted(patch(ctx, repo, ctx.start_upload(repo), data[:3000]), 2999)
    loc = expect_chunk_accepted(patch(ctx, repo, loc, data[3000:]), 4999)
    finish(ctx, repo, loc, data)

@check("upload-streamed-transfer-encoding", "push")
def _(ctx):
    # What the Docker client does for a layer: one PATCH with Transfer-Encoding: chunked.
    repo, data = ctx.repo("techunked"), os.urandom(70000)
    loc = ctx.start_upload(repo)
    r = ctx.c.request("PATCH", loc, repo, headers=OCTET, body=[data[:30000], data[30000:65536], data[65536:]])
    finish(ctx, repo, expect_chunk_accepted(r, len(data) - 1), data)

@check("upload-status", "push")
def _(ctx):
    repo = ctx.repo("status")
    loc = expect_chunk_accepted(patch(ctx, repo, ctx.start_upload(repo), os.urandom(100), 0), 99)
    r = status(ctx.c.request("GET", loc, repo), 204)
    header(r, "Range", "0-99")
    header(r, "Location")
    expect(r.body == b"", f"{r.what}: 204 with a body")
    ctx.c.request("DELETE", loc, repo)

@check("upload-cancel", "push")
def _(ctx):
    repo, data = ctx.repo("cancel"), os.urandom(100)
    loc = expect_chunk_accepted(patch(ctx, repo, ctx.start_upload(repo), data, 0), 99)
    status(ctx.c.request("DELETE", loc, repo, headers={"Content-Length": "0"}), 204)
    error(ctx.c.request("GET", loc, repo), 404, "BLOB_UPLOAD_UNKNOWN")
    error(patch(ctx, repo, loc, data, 100), 404, "BLOB_UPLOAD_UNKNOWN")
    status(ctx.req("HEAD", repo, f"blobs/{digest_of(data)}"), 404)

@check("upload-digest-mismatch", "push")
def _(ctx):
    repo, data = ctx.repo("mismatch"), os.urandom(500)
    ctx.push_blob(repo, os.urandom(10))  # the repository exists; only this upload is wrong
    claimed = digest_of(os.urandom(500))
    loc = ctx.start_upload(repo)
    error(ctx.c.request("PUT", with_query(loc, digest=claimed), repo, headers=OCTET, body=data), 400, "DIGEST_INVALID")
    status(ctx.req("HEAD", repo, f"blobs/{claimed}"), 404)
    status(ctx.req("HEAD", repo, f"blobs/{digest_of(data)}"), 404)

# --------------------------------------------------------------------------- mounts

def mount(ctx, dst, d, src=None):
    """POST ?mount=<d>[&from=<src>], with a token for pull on <src> as real clients ask."""
    params = {"mount": d, **({"from": src} if src else {})}
    scopes = [f"repository:{dst}:pull,push,delete"] + ([f"repository:{src}:pull"] if src else [])
    return ctx.c.request("POST", with_query(ctx.url(dst, "blobs/uploads/"), **params), dst, scopes=scopes)

@check("mount-from", "push", "mount")
def _(ctx):
    src, dst = ctx.repo("mountsrc"), ctx.repo("mountdst")
    d = ctx.push_blob(src, os.urandom(700))
    ctx.push_blob(dst, os.urandom(10))
    r = status(mount(ctx, dst, d, src), 201)
    expect(path_of(header(r, "Location")) == f"/v2/{dst}/blobs/{d}", f"Location {r.h('Location')!r}")
    content_digest(r, d)
    content_digest(status(ctx.req("HEAD", dst, f"blobs/{d}"), 200), d)

@check("mount-missing-blob", "push", "mount")
def _(ctx):
    src, dst = ctx.repo("mountsrc2"), ctx.repo("mountdst2")
    ctx.push_blob(src, os.urandom(10))
    data = os.urandom(600)
    r = status(mount(ctx, dst, digest_of(data), src), 202)
    # The 202 opened an ordinary session: the client uploads instead.
    finish(ctx, dst, header(r, "Location"), data, body=data, headers=OCTET)

@check("mount-from-repo-lacking-blob", "push", "mount")
def _(ctx):
    # The blob exists in another repository, but not in `from`: no mount (docs/OCI.md).
    src, other, dst = ctx.repo("mountsrc3"), ctx.repo("mountother3"), ctx.repo("mountdst3")
    ctx.push_blob(src, os.urandom(10))
    d = ctx.push_blob(other, os.urandom(600))
    r = status(mount(ctx, dst, d, src), 202)
    header(r, "Location")
    status(ctx.req("HEAD", dst, f"blobs/{d}"), 404)

@check("mount-malformed-digest", "push", "mount")
def _(ctx):
    # A mount the registry cannot do, whatever the reason, falls back to an upload session.
    src, dst = ctx.repo("mountsrc4"), ctx.repo("mountdst4")
    ctx.push_blob(src, os.urandom(10))
    data = os.urandom(300)
    r = status(mount(ctx, dst, "sha256:not-a-digest", src), 202)
    finish(ctx, dst, header(r, "Location"), data, body=data, headers=OCTET)

@check("mount-anonymous", "push", "mount")
def _(ctx):
    src, dst = ctx.repo("anonsrc"), ctx.repo("anondst")
    d = ctx.push_blob(src, os.urandom(800))
    r = status(mount(ctx, dst, d), 201)
    expect(path_of(header(r, "Location")) == f"/v2/{dst}/blobs/{d}", f"Location {r.h('Location')!r}")
    content_digest(r, d)
    status(ctx.req("HEAD", dst, f"blobs/{d}"), 200)

# --------------------------------------------------------------------------- manifests

def check_pushed(ctx, repo, ref, img, put):
    status(put, 201)
    content_digest(put, img.digest)
    g = status(ctx.c.request("GET", header(put, "Location"), repo, headers={"Accept": ACCEPT}), 200)
    expect(g.body == img.body, f"{g.what}: Location does not serve the manifest")
    check_manifest_response(ctx.req("GET", repo, f"manifests/{ref}"), img)

def put_and_check(ctx, repo, ref, body, mt):
    img = types.SimpleNamespace(digest=digest_of(body), body=body, mt=mt)
    check_pushed(ctx, repo, ref, img, ctx.put_manifest(repo, ref, body, mt))
    return img

def index_of(mt, children, child_mt):
    return jdump({"schemaVersion": 2, "mediaType": mt, "manifests": [
        {"mediaType": child_mt, "digest": c.digest, "size": len(c.body),
         "platform": {"architecture": arch, "os": "linux"}} for c, arch in zip(children, ("amd64", "arm64"))]})

@check("manifest-oci-image", "push", "manifests")
def _(ctx):
    repo = ctx.repo("ociimage")
    img = ctx.push_image(repo)  # by digest; now tag the same bytes
    put_and_check(ctx, repo, "latest", img.body, OCI_MANIFEST)

@check("manifest-oci-index", "push", "manifests")
def _(ctx):
    repo = ctx.repo("ociindex")
    kids = [ctx.push_image(repo), ctx.push_image(repo)]
    put_and_check(ctx, repo, "multi", index_of(OCI_INDEX, kids, OCI_MANIFEST), OCI_INDEX)

@check("manifest-docker-v2", "push", "manifests")
def _(ctx):
    repo = ctx.repo("docker")
    img = ctx.push_image(repo, docker=True)
    put_and_check(ctx, repo, "latest", img.body, DOCKER_MANIFEST)

@check("manifest-foreign-layers", "push", "manifests")
def _(ctx):
    # A Windows image: its base layers are foreign (fetched from their urls), not pushed.
    repo = ctx.repo("foreign")
    img = ctx.push_image(repo, docker=True)
    base = json.loads(img.body)
    foreign = {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "size": 1234,
               "digest": digest_of(os.urandom(16)), "urls": ["https://mcr.example/layers/base.tar.gz"]}
    doc = dict(base, layers=[foreign] + base["layers"])
    put_and_check(ctx, repo, "windows", jdump(doc), DOCKER_MANIFEST)
    # Without urls, or of an ordinary layer type, the layer must be in the repository.
    for layer in (dict(foreign, urls=[]), dict(foreign, mediaType=DOCKER_LAYER)):
        error(ctx.put_manifest(repo, "nope", jdump(dict(base, layers=[layer] + base["layers"])), DOCKER_MANIFEST),
              400, "MANIFEST_BLOB_UNKNOWN")
    error(ctx.put_manifest(repo, "nope", jdump(dict(base, layers=[dict(foreign, urls=["file:///etc/passwd"])] + base["layers"])),
                           DOCKER_MANIFEST), 400, "MANIFEST_INVALID")
    error(ctx.req("GET", repo, "manifests/nope"), 404, "MANIFEST_UNKNOWN")

@check("tags-case-insensitive-order", "tags")
def _(ctx):
    # The spec's lexical order is case-insensitive alphanumeric order, paging included.
    repo = ctx.repo("tagcase")
    img = ctx.push_image(repo)
    for t in ("B", "a", "C", "b1", "A0"):
        ctx.push_manifest(repo, t, img.body, OCI_MANIFEST)
    _, got = tags(ctx, repo, ctx.url(repo, "tags/list"))
    expect(got == ["a", "A0", "B", "b1", "C"], f"tags {got}")
    r = status(ctx.req("GET", repo, "tags/list?n=2&last=A0"), 200)
    expect(r.json().get("tags") == ["B", "b1"], f"{r.what}: {r.body[:120]!r}")
    expect(link_next(r) is not None, f"{r.what}: no Link to the rest")

@check("manifest-docker-list", "push", "manifests")
def _(ctx):
    repo = ctx.repo("dockerlist")
    kids = [ctx.push_image(repo, docker=True), ctx.push_image(repo, docker=True)]
    put_and_check(ctx, repo, "multi", index_of(DOCKER_LIST, kids, DOCKER_MANIFEST), DOCKER_LIST)

@check("manifest-4mib", "push", "manifests")
def _(ctx):
    repo = ctx.repo("big")
    img = ctx.push_image(repo)
    doc = json.loads(img.body)
    doc["annotations"] = {"org.example.pad": ""}
    pad = 4 * MIB - len(jdump(doc))
    doc["annotations"]["org.example.pad"] = "x" * pad
    body = jdump(doc)
    expect(len(body) == 4 * MIB, f"padding arithmetic: {len(body)}")
    put_and_check(ctx, repo, "big", body, OCI_MANIFEST)

@check("manifest-over-limit-413", "push", "manifests", "errors")
def _(ctx):
    repo = ctx.repo("toobig")
    img = ctx.push_image(repo)
    doc = json.loads(img.body)
    doc["annotations"] = {"org.example.pad": "x" * (5 * MIB)}
    error(ctx.put_manifest(repo, "big", jdump(doc), OCI_MANIFEST), 413, "SIZE_INVALID")
    error(ctx.req("GET", repo, "manifests/big"), 404, "MANIFEST_UNKNOWN")

@check("upload-post-digest-mismatch", "push", "errors")
def _(ctx):
    repo, data = ctx.repo("postmismatch"), os.urandom(400)
    ctx.push_blob(repo, os.urandom(10))
    claimed = digest_of(os.urandom(400))
    error(ctx.c.request("POST", with_query(ctx.url(repo, "blobs/uploads/"), digest=claimed), repo, headers=OCTET, body=data),
          400, "DIGEST_INVALID")
    status(ctx.req("HEAD", repo, f"blobs/{claimed}"), 404)
    status(ctx.req("HEAD", repo, f"blobs/{digest_of(data)}"), 404)

@check("manifest-put-by-digest", "push", "manifests")
def _(ctx):
    repo = ctx.repo("bydigest")
    img = ctx.push_image(repo, annotations={"org.example.k": "v"})
    put_and_check(ctx, repo, img.digest, img.body, OCI_MANIFEST)

@check("manifest-content-type-mismatch", "push", "manifests")
def _(ctx):
    repo = ctx.repo("ctype")
    kid = ctx.push_image(repo)
    body = index_of(OCI_INDEX, [kid], OCI_MANIFEST)
    error(ctx.put_manifest(repo, "wrong", body, OCI_MANIFEST), 400, "MANIFEST_INVALID")
    error(ctx.put_manifest(repo, "wrong", kid.body, DOCKER_MANIFEST), 400, "MANIFEST_INVALID")
    status(ctx.req("GET", repo, "manifests/wrong"), 404)

@check("manifest-invalid-body", "push", "manifests")
def _(ctx):
    repo = ctx.repo("garbage")
    ctx.push_blob(repo, os.urandom(10))
    error(ctx.put_manifest(repo, "bad", b"{ this is not json", OCI_MANIFEST), 400, "MANIFEST_INVALID")

@check("manifest-blob-unknown", "push", "manifests")
def _(ctx):
    repo = ctx.repo("blobunknown")
    img = ctx.push_image(repo)
    doc = json.loads(img.body)
    doc["layers"].append({"mediaType": OCI_LAYER, "digest": digest_of(os.urandom(64)), "size": 64})
    error(ctx.put_manifest(repo, "missing", jdump(doc), OCI_MANIFEST), 400, "MANIFEST_BLOB_UNKNOWN")
    status(ctx.req("GET", repo, "manifests/missing"), 404)

@check("manifest-index-child-unknown", "push", "manifests")
def _(ctx):
    repo = ctx.repo("childunknown")
    kid = ctx.push_image(repo)
    ghost = types.SimpleNamespace(digest=digest_of(os.urandom(64)), body=b"x" * 300)
    body = index_of(OCI_INDEX, [kid, ghost], OCI_MANIFEST)
    error(ctx.put_manifest(repo, "missing", body, OCI_INDEX), 400, "MANIFEST_BLOB_UNKNOWN")

@check("manifest-digest-mismatch", "push", "manifests")
def _(ctx):
    repo = ctx.repo("mdigest")
    img = ctx.push_image(repo, tag="t")
    doc = json.loads(img.body)
    doc["annotations"] = {"org.example.k": "other"}
    body = jdump(doc)
    error(ctx.put_manifest(repo, img.digest, body, OCI_MANIFEST), 400, "DIGEST_INVALID")
    status(ctx.req("HEAD", repo, f"manifests/{digest_of(body)}"), 404)
    check_manifest_response(ctx.req("GET", repo, f"manifests/{img.digest}"), img)

# --------------------------------------------------------------------------- tags

TAGS = ["alpha", "beta", "delta", "epsilon", "gamma"]

def tagged_repo(ctx, name):
    repo = ctx.repo(name)
    img = ctx.push_image(repo)
    for t in ("gamma", "alpha", "epsilon", "beta", "delta"):
        ctx.push_manifest(repo, t, img.body, OCI_MANIFEST)
    return repo

def tags(ctx, repo, url):
    r = status(ctx.c.request("GET", url, repo), 200)
    body = r.json()
    expect(body.get("name") == repo, f"{r.what}: name {body.get('name')!r}, want {repo!r}")
    expect(isinstance(body.get("tags"), list), f"{r.what}: tags is {body.get('tags')!r}")
    return r, body["tags"]

@check("tags-list", "tags")
def _(ctx):
    repo = tagged_repo(ctx, "tags")
    _, got = tags(ctx, repo, ctx.url(repo, "tags/list"))
    expect(got == TAGS, f"tags {got}, want {TAGS}")

@check("tags-list-paging", "tags")
def _(ctx):
    repo = tagged_repo(ctx, "paging")
    r, got = tags(ctx, repo, ctx.url(repo, "tags/list?n=2"))
    expect(got == TAGS[:2], f"first page {got}, want {TAGS[:2]}")
    nxt = link_next(r)
    expect(nxt is not None, f"{r.what}: no Link header although tags remain")
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(nxt).query)
    expect(path_of(nxt) == f"/v2/{repo}/tags/list" and q.get("n") == ["2"] and q.get("last") == ["beta"],
           f"Link target {nxt!r}, want /v2/{repo}/tags/list?n=2&last=beta")
    pages = [got]
    while nxt and len(pages) < 10:
        r, got = tags(ctx, repo, nxt)
        pages.append(got)
        nxt = link_next(r)
    expect(pages == [TAGS[:2], TAGS[2:4], TAGS[4:]], f"pages {pages}")

@check("tags-list-last", "tags")
def _(ctx):
    repo = tagged_repo(ctx, "last")
    _, got = tags(ctx, repo, ctx.url(repo, "tags/list?n=2&last=beta"))
    expect(got == ["delta", "epsilon"], f"n=2&last=beta gave {got}")
    r, got = tags(ctx, repo, ctx.url(repo, "tags/list?last=delta"))
    expect(got == ["epsilon", "gamma"] and link_next(r) is None, f"last=delta gave {got}, Link {r.h('Link')!r}")

@check("tags-list-last-past-the-end", "tags")
def _(ctx):
    repo = tagged_repo(ctx, "tagsend")
    r = status(ctx.req("GET", repo, "tags/list?n=5&last=zzzz"), 200)
    expect(r.json().get("tags") == [], f"{r.what}: {r.body[:120]!r}")
    expect(link_next(r) is None, f"{r.what}: a Link past the end")

@check("tags-list-n-zero", "tags")
def _(ctx):
    repo = tagged_repo(ctx, "nzero")
    r, got = tags(ctx, repo, ctx.url(repo, "tags/list?n=0"))
    expect(got == [] and r.h("Link") is None, f"n=0 gave {got}, Link {r.h('Link')!r}")

# --------------------------------------------------------------------------- referrers

def push_referrer(ctx, repo, subject, artifact_type="application/vnd.example.sig.v1", annotations=None,
                  config_mt=None):
    """An artifact manifest (config = the empty descriptor unless config_mt) pushed by digest."""
    cfg = b"{}" if config_mt is None else json.dumps({"nonce": os.urandom(4).hex()}).encode()
    cfg_d, layer = ctx.push_blob(repo, cfg), os.urandom(50)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": config_mt or OCI_EMPTY, "digest": cfg_d, "size": len(cfg)},
           "layers": [{"mediaType": "application/vnd.example.payload", "digest": ctx.push_blob(repo, layer),
                       "size": len(layer)}],
           "subject": {"mediaType": subject.mt, "digest": subject.digest, "size": len(subject.body)},
           "annotations": annotations or {"org.example.nonce": os.urandom(4).hex()}}
    if artifact_type:
        doc["artifactType"] = artifact_type
    body = jdump(doc)
    r = ctx.put_manifest(repo, digest_of(body), body, OCI_MANIFEST)
    return r, types.SimpleNamespace(digest=digest_of(body), body=body, mt=OCI_MANIFEST, doc=doc)

def referrers(ctx, repo, subject_digest, artifact_type=None):
    rest = f"referrers/{subject_digest}"
    if artifact_type:
        rest += "?artifactType=" + urllib.parse.quote(artifact_type, safe="")
    r = status(ctx.req("GET", repo, rest), 200)
    expect(media(r.h("Content-Type")) == OCI_INDEX, f"{r.what}: Content-Type {r.h('Content-Type')!r}")
    body = r.json()
    expect(body.get("schemaVersion") == 2 and body.get("mediaType") == OCI_INDEX, f"{r.what}: not an index")
    expect(isinstance(body.get("manifests"), list), f"{r.what}: manifests is {body.get('manifests')!r}")
    return r, {m.get("digest"): m for m in body["manifests"]}

@check("referrers-push-subject", "referrers")
def _(ctx):
    repo = ctx.repo("refpush")
    subject = ctx.push_image(repo, tag="v1")
    r, _ = push_referrer(ctx, repo, subject)
    status(r, 201)
    header(r, "OCI-Subject", subject.digest)

@check("referrers-subject-missing-accepted", "referrers")
def _(ctx):
    repo = ctx.repo("refmissing")
    ghost = types.SimpleNamespace(digest=digest_of(os.urandom(32)), body=b"x" * 500, mt=OCI_MANIFEST)
    r, art = push_referrer(ctx, repo, ghost)
    status(r, 201)
    header(r, "OCI-Subject", ghost.digest)
    _, found = referrers(ctx, repo, ghost.digest)
    expect(art.digest in found, "the referrer of a not-yet-pushed subject is not listed")

@check("referrers-list", "referrers")
def _(ctx):
    repo = ctx.repo("reflist")
    subject = ctx.push_image(repo, tag="v1")
    arts = []
    for t in ("application/vnd.example.sbom.v1", "application/vnd.example.sig.v1"):
        r, art = push_referrer(ctx, repo, subject, t, {"org.example.kind": t, "org.opencontainers.image.created": "2024-01-01T00:00:00Z"})
        status(r, 201)
        arts.append(art)
    _, found = referrers(ctx, repo, subject.digest)
    expect(set(found) == {a.digest for a in arts}, f"listed {sorted(found)}, want the 2 referrers")
    for a in arts:
        d = found[a.digest]
        want = {"mediaType": OCI_MANIFEST, "size": len(a.body), "artifactType": a.doc["artifactType"],
                "annotations": a.doc["annotations"]}
        got = {k: d.get(k) for k in want}
        expect(got == want, f"descriptor {got}, want {want}")

@check("referrers-artifact-type-fallback", "referrers")
def _(ctx):
    repo = ctx.repo("reffallback")
    subject = ctx.push_image(repo, tag="v1")
    r, art = push_referrer(ctx, repo, subject, artifact_type=None, config_mt="application/vnd.example.config.v1+json")
    status(r, 201)
    _, found = referrers(ctx, repo, subject.digest)
    got = found.get(art.digest, {}).get("artifactType")
    expect(got == "application/vnd.example.config.v1+json", f"artifactType {got!r}, want the config mediaType")

@check("referrers-filter", "referrers")
def _(ctx):
    repo = ctx.repo("reffilter")
    subject = ctx.push_image(repo, tag="v1")
    sbom = push_referrer(ctx, repo, subject, "application/vnd.example.sbom.v1")[1]
    push_referrer(ctx, repo, subject, "application/vnd.example.sig.v1")
    r, found = referrers(ctx, repo, subject.digest, "application/vnd.example.sbom.v1")
    header(r, "OCI-Filters-Applied", "artifactType")
    expect(list(found) == [sbom.digest], f"filtered listing {list(found)}, want only the SBOM")
    r, found = referrers(ctx, repo, subject.digest, "application/vnd.example.none")
    expect(found == {}, f"filter on an absent type listed {list(found)}")

@check("referrers-unknown-subject", "referrers")
def _(ctx):
    repo = ctx.fixture().repo
    r, found = referrers(ctx, repo, digest_of(os.urandom(32)))
    expect(found == {}, f"{r.what}: unknown subject listed {list(found)}")

@check("referrers-invalid-digest", "referrers")
def _(ctx):
    error(ctx.req("GET", ctx.fixture().repo, "referrers/sha256:" + "z" * 64), 400, "DIGEST_INVALID")

@check("referrers-after-delete", "referrers", "delete")
def _(ctx):
    repo = ctx.repo("refdelete")
    subject = ctx.push_image(repo, tag="v1")
    r, art = push_referrer(ctx, repo, subject)
    status(r, 201)
    status(ctx.req("DELETE", repo, f"manifests/{art.digest}"), 202)
    _, found = referrers(ctx, repo, subject.digest)
    expect(art.digest not in found, "a deleted referrer is still listed")

# --------------------------------------------------------------------------- deletes

@check("delete-tag", "delete")
def _(ctx):
    repo = ctx.repo("deltag")
    img = ctx.push_image(repo, tag="one")
    ctx.push_manifest(repo, "two", img.body, OCI_MANIFEST)
    status(ctx.req("DELETE", repo, "manifests/one"), 202)
    error(ctx.req("GET", repo, "manifests/one"), 404, "MANIFEST_UNKNOWN")
    check_manifest_response(ctx.req("GET", repo, f"manifests/{img.digest}"), img)
    check_manifest_response(ctx.req("GET", repo, "manifests/two"), img)
    _, got = tags(ctx, repo, ctx.url(repo, "tags/list"))
    expect(got == ["two"], f"tags after deleting one: {got}")

@check("delete-manifest", "delete")
def _(ctx):
    repo = ctx.repo("delmanifest")
    img = ctx.push_image(repo, tag="a")
    ctx.push_manifest(repo, "b", img.body, OCI_MANIFEST)
    content_digest(status(ctx.req("DELETE", repo, f"manifests/{img.digest}"), 202), img.digest)
    error(ctx.req("GET", repo, f"manifests/{img.digest}"), 404, "MANIFEST_UNKNOWN")
    error(ctx.req("GET", repo, "manifests/a"), 404, "MANIFEST_UNKNOWN")
    status(ctx.req("HEAD", repo, "manifests/b"), 404)
    r = ctx.req("GET", repo, "tags/list")
    if r.status == 200:
        left = r.json().get("tags") or []
        expect(not {"a", "b"} & set(left), f"tags still listed after the manifest was deleted: {left}")
    else:
        error(r, 404, "NAME_UNKNOWN")
    error(ctx.req("DELETE", repo, f"manifests/{img.digest}"), 404, "MANIFEST_UNKNOWN")

@check("delete-blob", "delete")
def _(ctx):
    repo = ctx.repo("delblob")
    d = ctx.push_blob(repo, os.urandom(400))
    ctx.push_blob(repo, os.urandom(10))
    status(ctx.req("DELETE", repo, f"blobs/{d}"), 202)
    status(ctx.req("HEAD", repo, f"blobs/{d}"), 404)
    error(ctx.req("GET", repo, f"blobs/{d}"), 404, "BLOB_UNKNOWN")
    error(ctx.req("DELETE", repo, f"blobs/{d}"), 404, "BLOB_UNKNOWN")

# --------------------------------------------------------------------------- errors

@check("error-name-unknown", "errors")
def _(ctx):
    error(ctx.req("GET", ctx.repo("nosuchrepo"), "tags/list"), 404, "NAME_UNKNOWN")

@check("error-registry-unknown", "errors", when=lambda ctx: None if ctx.prefix else "--prefix ''")
def _(ctx):
    repo = f"zz{ctx.run}nosuchacr/conf/x"
    error(ctx.req("GET", repo, "tags/list"), 404, "NAME_UNKNOWN")
    error(ctx.req("GET", repo, "manifests/latest"), 404, "NAME_UNKNOWN")

@check("error-manifest-unknown", "errors")
def _(ctx):
    repo = ctx.fixture().repo
    error(ctx.req("GET", repo, "manifests/nosuchtag"), 404, "MANIFEST_UNKNOWN")
    error(ctx.req("GET", repo, f"manifests/{digest_of(os.urandom(8))}"), 404, "MANIFEST_UNKNOWN")
    status(ctx.req("HEAD", repo, "manifests/nosuchtag"), 404)

@check("error-blob-unknown", "errors")
def _(ctx):
    repo, d = ctx.fixture().repo, digest_of(os.urandom(8))
    error(ctx.req("GET", repo, f"blobs/{d}"), 404, "BLOB_UNKNOWN")
    status(ctx.req("HEAD", repo, f"blobs/{d}"), 404)

@check("error-name-invalid", "errors")
def _(ctx):
    repo = ctx.repo("Upper-Case")
    error(ctx.req("GET", repo, "tags/list"), 400, "NAME_INVALID")
    error(ctx.req("POST", repo, "blobs/uploads/"), 400, "NAME_INVALID")

@check("error-name-too-long", "errors")
def _(ctx):
    stem = ctx.repo("long")
    at_limit = stem + "a" * (255 - len(stem))
    error(ctx.req("GET", at_limit, "tags/list"), 404, "NAME_UNKNOWN")  # 255 characters: valid, unknown
    error(ctx.req("GET", at_limit + "a", "tags/list"), 400, "NAME_INVALID")

@check("error-tag-invalid", "errors")
def _(ctx):
    # The spec's code list has no TAG_INVALID; a malformed reference is MANIFEST_INVALID.
    img = ctx.fixture()
    for tag in ("-leading-dash", ".leading-dot", "t" * 129):
        error(ctx.put_manifest(img.repo, tag, img.body, OCI_MANIFEST), 400, "MANIFEST_INVALID")

@check("error-digest-invalid", "errors")
def _(ctx):
    repo = ctx.fixture().repo
    for bad in ("sha256:" + "0" * 63, "sha256:" + "z" * 64):
        error(ctx.req("GET", repo, f"blobs/{bad}"), 400, "DIGEST_INVALID")
        loc = ctx.start_upload(repo)
        error(ctx.c.request("PUT", with_query(loc, digest=bad), repo, headers=OCTET, body=b"abc"), 400, "DIGEST_INVALID")

# --------------------------------------------------------------------------- sha512

@check("sha512-blob-upload", "sha512")
def _(ctx):
    repo, data = ctx.repo("sha512blob"), os.urandom(900)
    d = digest_of(data, "sha512")
    loc = ctx.start_upload(repo)
    r = status(ctx.c.request("PUT", with_query(loc, digest=d), repo, headers=OCTET, body=data), 201)
    loc = status(ctx.c.request("GET", header(r, "Location"), repo), 200)
    expect(loc.body == data, f"{loc.what}: the Location does not serve the blob")
    # The spec lets Location and Docker-Content-Digest use another algorithm; they must name these bytes.
    ok = {d, digest_of(data)}
    for resp in (r, status(ctx.req("HEAD", repo, f"blobs/{d}"), 200)):
        expect(header(resp, "Docker-Content-Digest") in ok, f"{resp.what}: Docker-Content-Digest {resp.h('Docker-Content-Digest')!r}")
    g = status(ctx.req("GET", repo, f"blobs/{d}"), 200)
    expect(g.body == data, f"{g.what}: wrong bytes")

@check("sha512-chunked-post-and-mount", "sha512", "mount")
def _(ctx):
    # sha512 by every other way in: chunks (the bytes re-hashed at the end), one POST, a mount.
    repo, data = ctx.repo("sha512more"), os.urandom(3000)
    d = digest_of(data, "sha512")
    loc = expect_chunk_accepted(patch(ctx, repo, ctx.start_upload(repo), data[:1000], 0), 999)
    loc = expect_chunk_accepted(patch(ctx, repo, loc, data[1000:], 1000), 2999)
    status(ctx.c.request("PUT", with_query(loc, digest=d), repo), 201)
    expect(status(ctx.req("GET", repo, f"blobs/{d}"), 200).body == data, "chunked sha512 upload: wrong bytes")
    other = os.urandom(500)
    error(ctx.c.request("POST", with_query(ctx.url(repo, "blobs/uploads/"), digest=digest_of(os.urandom(500), "sha512")), repo,
                        headers=OCTET, body=other), 400, "DIGEST_INVALID")
    d2 = digest_of(other, "sha512")
    status(ctx.c.request("POST", with_query(ctx.url(repo, "blobs/uploads/"), digest=d2), repo, headers=OCTET, body=other), 201)
    dst = ctx.repo("sha512mountdst")
    ctx.push_blob(dst, os.urandom(10))
    status(mount(ctx, dst, d, repo), 201)
    expect(status(ctx.req("GET", dst, f"blobs/{d}"), 200).body == data, "mounted sha512 blob: wrong bytes")

@check("sha512-manifest-put-by-digest", "sha512")
def _(ctx):
    repo = ctx.repo("sha512manifest")
    img = ctx.push_image(repo, tag="v1")
    d = digest_of(img.body, "sha512")
    put = status(ctx.put_manifest(repo, d, img.body, OCI_MANIFEST), 201)
    content_digest(put, d)
    g = status(ctx.req("GET", repo, f"manifests/{d}"), 200)
    expect(g.body == img.body, f"{g.what}: wrong bytes")
    content_digest(g, d)

# --------------------------------------------------------------------------- a pull-only principal

def reader(ctx):
    c = Client(ctx.args.base, ctx.args.reader_password, log=ctx.c.api_version_misses)
    c.realm, c.service = ctx.c.realm, ctx.c.service
    return c

def refused(r):
    error(r, (401, 403), ("UNAUTHORIZED", "DENIED"))

@check("reader-pull", "reader", when=needs_reader)
def _(ctx):
    img, rd = ctx.fixture(), reader(ctx)
    check_manifest_response(rd.request("GET", ctx.url(img.repo, "manifests/v1"), img.repo), img)
    status(rd.request("GET", ctx.url(img.repo, f"blobs/{img.layer_digest}"), img.repo), 200)

@check("reader-push-denied", "reader", when=needs_reader)
def _(ctx):
    img, rd = ctx.fixture(), reader(ctx)
    refused(rd.request("POST", ctx.url(img.repo, "blobs/uploads/"), img.repo))
    refused(rd.request("PUT", ctx.url(img.repo, "manifests/reader"), img.repo,
                       headers={"Content-Type": OCI_MANIFEST}, body=img.body))
    status(ctx.req("HEAD", img.repo, "manifests/reader"), 404)

@check("reader-delete-denied", "reader", when=needs_reader)
def _(ctx):
    img, rd = ctx.fixture(), reader(ctx)
    refused(rd.request("DELETE", ctx.url(img.repo, f"manifests/{img.digest}"), img.repo))
    status(ctx.req("HEAD", img.repo, f"manifests/{img.digest}"), 200)

# --------------------------------------------------------------------------- last: headers seen on every response

@check("api-version-header", "base")
def _(ctx):
    misses = ctx.c.api_version_misses
    expect(not misses, f"{len(misses)} /v2/ responses without Docker-Distribution-API-Version: registry/2.0, "
                       f"e.g. {misses[:4]}")

# --------------------------------------------------------------------------- main

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="http://127.0.0.1:5000")
    p.add_argument("--prefix", default="", help="container registry name (path form); '' for none")
    p.add_argument("--password", help="moat access token")
    p.add_argument("--reader-password", help="access token of a principal that may only pull")
    p.add_argument("--no-auth", action="store_true", help="the registry asks for no credentials")
    p.add_argument("--skip", default="", help="comma-separated check or group names")
    p.add_argument("--only", default="", help="comma-separated check or group names to run")
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--list", action="store_true", help="list the checks and their groups")
    args = p.parse_args()
    if args.list:
        for c in CHECKS:
            print(c.name, " ".join(sorted(c.groups - {c.name})))
        return 0
    if not args.no_auth and not args.password:
        p.error("--password is required unless --no-auth")
    client = Client(args.base, args.password, args.no_auth, timeout=args.timeout)
    if not args.no_auth:
        client.discover()
    ctx = Ctx(args, client)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    passed, failures, skipped = 0, [], 0
    for c in CHECKS:
        if only and not c.groups & only:
            continue
        reason = "--skip" if c.groups & skip else c.when(ctx) if c.when else None
        if reason:
            skipped += 1
            print(f"SKIP {c.name}: {reason}", file=sys.stderr, flush=True)
            continue
        try:
            c.fn(ctx)
        except Failed as e:
            failures.append({"check": c.name, "reason": str(e)})
        except Exception as e:  # noqa: BLE001 - a crash is a failure of that check only
            failures.append({"check": c.name, "reason": f"{type(e).__name__}: {e}"})
        else:
            passed += 1
            print(f"PASS {c.name}", file=sys.stderr, flush=True)
            continue
        print(f"FAIL {c.name}: {failures[-1]['reason']}", file=sys.stderr, flush=True)
    print(json.dumps({"passed": passed, "failed": len(failures), "skipped": skipped, "failures": failures}))
    return 1 if failures else 0

if __name__ == "__main__":
    sys.exit(main())
