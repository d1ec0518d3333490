#!/usr/bin/env python3
"""Headless Chromium as an HTTP/3 client for the endpoint contract
(docs/endpoints.md), driven over the DevTools protocol on a pipe
(--remote-debugging-pipe; no port is opened).

A blank page fetch()es every URL of QB_REQUESTS, at most QB_PARALLEL at once
(one QUIC connection: --origin-to-force-quic-on names the server's origin, no
Alt-Svc needed). The bodies are kept in the page and read back (base64) over
the pipe, then saved as QB_DOWNLOADS/<last path segment>: the harness checks
them byte for byte like any other client's. Timings and the protocol come
from the DevTools Network events (Chromium's own clock):

  connect_ms  connectEnd  (QUIC handshake done; only where the request
              opened the connection)
  tls_ms      sslEnd when Chromium reports one, else connectEnd
  ttfb_ms     receiveHeadersEnd
  total_ms    loadingFinished
  protocol    the response's protocol ("h3"; anything else fails the run)

all from the request's start (requestTime). The server's certificate is
verified against QB_CA (and QB_SERVER_NAME, the URL's host) through an NSS
database in a fresh profile, which holds QB_CA as its only added trust
anchor. Chromium keeps QUIC session tickets only in memory: no resumption
across runs, no 0-RTT. QB_KEYLOG: --ssl-key-log-file.
"""

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qb_contract import Contract  # noqa: E402
import time
from urllib.parse import urlsplit

TIMEOUT_S = float(os.environ.get("QB_CLIENT_TIMEOUT_S", "300"))
SLICE = 4 << 20  # bytes of body per read-back call

FETCH_JS = r"""
(async (urls, parallel) => {
  window.qbBodies = [];
  const out = [];
  let next = 0;
  async function worker() {
    while (next < urls.length) {
      const i = next++;
      try {
        const r = await fetch(urls[i], {cache: "no-store", credentials: "omit"});
        const body = new Uint8Array(await r.arrayBuffer());
        window.qbBodies[i] = body;
        out[i] = {status: r.status, bytes: body.length};
      } catch (e) {
        out[i] = {status: 0, error: String(e)};
      }
    }
  }
  await Promise.all(Array.from({length: Math.min(parallel, urls.length)}, worker));
  return out;
})
"""

SLICE_JS = r"""
((i, start, end) => {
  const b = window.qbBodies[i].subarray(start, end);
  let s = "";
  for (let k = 0; k < b.length; k += 0x8000) s += String.fromCharCode.apply(null, b.subarray(k, k + 0x8000));
  return btoa(s);
})
"""


_C = Contract("chromium-client")
die, env = _C.die, _C.env


class Pipe:
    """The DevTools protocol over fds 3 (to Chromium) and 4 (from it)."""

    def __init__(self, to_fd, from_fd, deadline):
        self.to_fd, self.from_fd, self.deadline = to_fd, from_fd, deadline
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.log = None

    def send(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self.to_fd, data)
            data = data[n:]
        return self.next_id

    def read(self):
        while b"\0" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                die(f"no complete answer within {TIMEOUT_S} s (QB_CLIENT_TIMEOUT_S)")
            r, _, _ = select.select([self.from_fd], [], [], left)
            if r:
                chunk = os.read(self.from_fd, 1 << 20)
                if not chunk:
                    die("chromium closed the DevTools pipe (it exited; see stderr)")
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=None):
        if self.log:
            print(f"{time.monotonic():.3f} -> {method}", file=self.log, flush=True)
        want = self.send(method, params, session)
        while True:
            msg = self.read()
            if msg.get("id") == want:
                if "error" in msg:
                    die(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
                if self.log:
                    print(f"{time.monotonic():.3f} <- {msg['method']}", file=self.log, flush=True)


def nss_trust(home, ca):
    certutil = shutil.which("certutil")
    if not certutil:
        die("program certutil not found (Debian libnss3-tools; install it with scripts/install-endpoints.sh)")
    db = os.path.join(home, ".pki", "nssdb")
    os.makedirs(db, exist_ok=True)
    subprocess.run([certutil, "-N", "-d", f"sql:{db}", "--empty-password"], check=True)
    # QB_CA may hold several certificates: add each CA among them.
    pems = open(ca).read().split("-----END CERTIFICATE-----")
    added = 0
    for k, pem in enumerate(p for p in pems if "BEGIN CERTIFICATE" in p):
        path = os.path.join(home, f"ca{k}.pem")
        with open(path, "w") as f:
            f.write(pem.strip() + "\n-----END CERTIFICATE-----\n")
        subprocess.run([certutil, "-A", "-d", f"sql:{db}", "-t", "C,,", "-n", f"qb-ca-{k}", "-i", path], check=True)
        added += 1
    if not added:
        die(f"{ca}: no certificate")


def main():
    if (os.environ.get("QB_PROTOCOL") or "h3") != "h3":
        die(f"QB_PROTOCOL={os.environ['QB_PROTOCOL']} is not h3")
    cc = os.environ.get("QB_CC") or "cubic"
    if cc != "cubic":
        die(f"congestion controller QB_CC={cc} is not available here (can run: cubic)")
    if os.environ.get("QB_RESUME") == "1" or os.environ.get("QB_EARLY_DATA") == "1":
        die("chromium keeps QUIC sessions in memory only: no resumption or 0-RTT across runs")
    addr, port = env("QB_SERVER_ADDR"), env("QB_SERVER_PORT")
    out_dir, downloads = env("QB_OUTPUT_DIR"), env("QB_DOWNLOADS")
    os.makedirs(downloads, exist_ok=True)
    urls = env("QB_REQUESTS").split()
    parallel = int(os.environ.get("QB_PARALLEL") or "1")
    for u in urls:
        if urlsplit(u).hostname != env("QB_SERVER_NAME"):
            die(f"{u}: host is not QB_SERVER_NAME={os.environ['QB_SERVER_NAME']}")
    chromium = os.environ.get("QB_CHROMIUM") or next(
        (p for p in ("/usr/lib/chromium/chromium", shutil.which("chromium") or "") if p and os.access(p, os.X_OK)), None
    )
    if not chromium:
        die("program chromium not found (install it with scripts/install-endpoints.sh)")

    # A fresh profile and HOME (the NSS database lives in HOME/.pki/nssdb).
    home = os.path.join(out_dir, "chromium-home")
    shutil.rmtree(home, ignore_errors=True)
    os.makedirs(home)
    nss_trust(home, env("QB_CA"))
    args = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--remote-debugging-pipe",
        f"--user-data-dir={os.path.join(home, 'profile')}",
        # The page is about:blank: reading cross-origin bodies needs this
        # (the servers send no CORS headers); it changes nothing on the wire.
        "--disable-web-security",
        "--enable-quic",
        f"--origin-to-force-quic-on={addr}:{port}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-gpu",
        "--mute-audio",
        "--no-proxy-server",
    ]
    if os.environ.get("QB_KEYLOG"):
        args.append(f"--ssl-key-log-file={os.environ['QB_KEYLOG']}")
    if os.environ.get("QB_VERBOSE") == "1":
        args.append(f"--log-net-log={os.path.join(out_dir, 'chromium-netlog.json')}")
    args.append("about:blank")

    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()

    def child_fds():
        # Chromium reads fd 3 and writes fd 4; move both out of the way first
        # (either may itself be 3 or 4).
        a = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10)
        b = fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
        os.dup2(a, 3)
        os.dup2(b, 4)

    child_env = dict(os.environ, HOME=home)
    proc = subprocess.Popen(
        args, env=child_env, pass_fds=(3, 4), preexec_fn=child_fds, stdin=subprocess.DEVNULL,
        stdout=sys.stderr, stderr=open(os.path.join(out_dir, "chromium-stderr.log"), "w"),
    )
    os.close(to_r)
    os.close(from_w)
    pipe = Pipe(to_w, from_r, time.monotonic() + TIMEOUT_S)
    pipe.log = open(os.path.join(out_dir, "chromium-devtools.log"), "w")
    try:
        return run(pipe, urls, parallel, downloads)
    finally:
        try:
            pipe.send("Browser.close")
        except OSError:
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(pipe, urls, parallel, downloads):
    targets = pipe.call("Target.getTargets")["targetInfos"]
    page = next((t for t in targets if t["type"] == "page"), None)
    if page is None:
        page = {"targetId": pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]}
    session = pipe.call("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
    pipe.call("Network.enable", {}, session)
    pipe.call("Network.setCacheDisabled", {"cacheDisabled": True}, session)
    res = pipe.call(
        "Runtime.evaluate",
        {"expression": f"{FETCH_JS}({json.dumps(urls)}, {parallel})", "awaitPromise": True, "returnByValue": True},
        session,
    )
    if "exceptionDetails" in res:
        die(f"page script failed: {res['exceptionDetails']}")
    results = res["result"]["value"]

    # Network events: request id -> url, response, finish time.
    reqs = {}
    for ev in pipe.events:
        p = ev.get("params", {})
        if ev["method"] == "Network.requestWillBeSent":
            reqs.setdefault(p["requestId"], {})["url"] = p["request"]["url"]
        elif ev["method"] == "Network.responseReceived":
            reqs.setdefault(p["requestId"], {})["response"] = p["response"]
        elif ev["method"] == "Network.loadingFinished":
            reqs.setdefault(p["requestId"], {})["finished"] = p["timestamp"]
    by_url = {r["url"]: r for r in reqs.values() if "url" in r}

    bad = 0
    lines = []
    protocols = set()
    for i, url in enumerate(urls):
        r = results[i]
        if r.get("status") != 200:
            print(f"chromium-client: {url}: status {r.get('status')} {r.get('error', '')}", file=sys.stderr)
            bad += 1
            continue
        with open(os.path.join(downloads, url.rstrip("/").rsplit("/", 1)[-1]), "wb") as f:
            for start in range(0, r["bytes"], SLICE):
                part = pipe.call(
                    "Runtime.evaluate",
                    {"expression": f"{SLICE_JS}({i}, {start}, {start + SLICE})", "returnByValue": True},
                    session,
                )
                f.write(base64.b64decode(part["result"]["value"]))
        rec = {"index": i, "status": r["status"]}
        net = by_url.get(url, {})
        resp = net.get("response", {})
        proto = resp.get("protocol")
        protocols.add(proto)
        t = resp.get("timing")
        if t:
            if t.get("connectStart", -1) >= 0:
                rec["connect_ms"] = round(t["connectEnd"], 3)
                rec["tls_ms"] = round(t["sslEnd"] if t.get("sslEnd", -1) >= 0 else t["connectEnd"], 3)
            rec["ttfb_ms"] = round(t["receiveHeadersEnd"], 3)
            if "finished" in net:
                rec["total_ms"] = round((net["finished"] - t["requestTime"]) * 1000, 3)
        rec["protocol"] = proto
        lines.append(json.dumps(rec))
        if proto != "h3":
            print(f"chromium-client: {url}: protocol {proto}, not h3", file=sys.stderr)
            bad += 1
    if os.environ.get("QB_TIMINGS"):
        with open(os.environ["QB_TIMINGS"], "a") as f:
            f.write("".join(line + "\n" for line in lines))
    print(f"chromium-client: {len(urls) - bad}/{len(urls)} ok, protocols {sorted(map(str, protocols))}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
