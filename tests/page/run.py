#!/usr/bin/python3
"""The web page ([http] listen) against the real parksyncd.

  run.py --daemon BIN --cli BIN bounds    connection limit, oversized
                                          headers, a silent client, a
                                          slow event stream
  run.py --daemon BIN --cli BIN browser   chromium (headless, DevTools
                                          protocol) shows a push without
                                          a reload, then the stale and
                                          reconnecting states

Each test starts its own daemon on ipc:// endpoints in a temporary
directory and [http] listen = 127.0.0.1:0 (the port is read from its log).
Nothing waits by sleeping: every check polls for its condition until a
deadline. Exit 0 on success, 1 on failure, 77 (skipped) when chromium is
not installed. PARKSYNC_KEEP_TEST_DIR=1 keeps the directory.
"""
import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SKIP = 77


def deadline_loop(seconds, what):
    """Yields until the caller breaks; fails naming `what` after `seconds`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        yield
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


class Daemon:
    """parksyncd on ipc:// endpoints with the web page on a free port."""

    def __init__(self, args, extra=""):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="parksync-page-")
        d = self.dir
        self.eps = ["--ingest", f"ipc://{d}/ingest", "--publish", f"ipc://{d}/publish",
                    "--query", f"ipc://{d}/query"]
        self.control = ["--control", f"ipc://{d}/ctl/control"]
        with open(f"{d}/parksyncd.conf", "w") as f:
            f.write(f"[daemon]\ndatabase = {d}/parksync.db\n"
                    f"[endpoints]\ningest = ipc://{d}/ingest\npublish = ipc://{d}/publish\n"
                    f"query = ipc://{d}/query\ncontrol = ipc://{d}/ctl/control\n"
                    f"[http]\nlisten = 127.0.0.1:0\n{extra}")
        self.log = open(f"{d}/daemon.log", "w+")
        self.proc = subprocess.Popen([args.daemon, "-c", f"{d}/parksyncd.conf"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.port = None
        for _ in deadline_loop(30, "the daemon to serve its page"):
            m = re.search(r"web page served on \S+ \(port (\d+)\)", self.log_text())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                raise AssertionError("parksyncd exited:\n" + self.log_text())
            time.sleep(0.05)

    def log_text(self):
        with open(f"{self.dir}/daemon.log") as f:
            return f.read()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def push(self, lines, producer="AZ-MOE", window=None):
        path = f"{self.dir}/push-{time.monotonic_ns()}.jsonl"
        with open(path, "w") as f:
            f.write("\n".join(json.dumps(line) for line in lines) + "\n")
        cmd = [self.args.cli, "push", *self.eps, "--producer", producer, "--timeout", "60"]
        if window:
            cmd += ["--window", str(window)]
        subprocess.run(cmd + [path], check=True, stdout=subprocess.DEVNULL)

    def metric(self, outcome):
        text = subprocess.run([self.args.cli, "metrics", *self.control], check=True,
                              capture_output=True, text=True).stdout
        m = re.search(r'^parksync_page_http_total\{outcome="%s"\} (\d+)$' % outcome, text, re.M)
        assert m, "no parksync_page_http_total in the metrics"
        return int(m.group(1))

    def wait_metric(self, outcome, at_least, seconds=10):
        for _ in deadline_loop(seconds, f"parksync_page_http_total{{outcome={outcome}}} >= {at_least}"):
            if self.metric(outcome) >= at_least:
                return
            time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self, ok):
        self.stop()
        self.log.close()
        # a clean stop, and nothing the sanitizers of `make test` found
        if ok and (self.proc.returncode != 0 or re.search(r"Sanitizer|runtime error",
                                                          self.log_text())):
            ok = False
            print(f"FAIL: parksyncd exited with {self.proc.returncode}:\n" + self.log_text()[-3000:])
        if ok and not os.environ.get("PARKSYNC_KEEP_TEST_DIR"):
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print(f"kept {self.dir} (daemon.log)")
        return ok


def park(park_id, residents, investment=None):
    p = {"park_id": park_id, "country": "AZ", "name": park_id.title(), "reported_residents": residents}
    if investment is not None:
        p["reported_investment_usd_cents"] = investment
    return {"park": p}


def examples(args):
    return os.path.join(args.examples, "az-moe.jsonl"), os.path.join(args.examples, "tj-mint.jsonl")


def push_examples(d, args):
    az, tj = examples(args)
    for producer, path in (("AZ-MOE", az), ("TJ-MINT", tj)):
        subprocess.run([args.cli, "push", *d.eps, "--producer", producer, path], check=True,
                       stdout=subprocess.DEVNULL)


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def open_stream(port, rcvbuf=None):
    """An event stream, read up to its first event's name."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return s


def read_until(s, needle, seconds=10):
    got = b""
    s.settimeout(0.2)
    for _ in deadline_loop(seconds, f"{needle!r} on an event stream"):
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            raise AssertionError(f"stream closed before {needle!r}: {got[-300:]!r}")
        got += chunk
        if needle in got:
            return got


def closed_by_server(s, seconds):
    """True when the server ends the connection (EOF or reset) in time,
    reading whatever it sent before."""
    s.settimeout(0.2)
    for _ in deadline_loop(seconds, "the server to close the connection"):
        try:
            if not s.recv(1 << 20):
                return True
        except socket.timeout:
            continue
        except ConnectionResetError:
            return True


# ---------------------------------------------------------------- bounds

def test_connection_limit(d):
    streams = []
    for _ in range(64):  # PAGE_CONNECTIONS, every one a live event stream
        s = open_stream(d.port)
        read_until(s, b"event: summary")
        streams.append(s)
    extra = socket.create_connection(("127.0.0.1", d.port))
    extra.sendall(b"GET /summary.json HTTP/1.0\r\n\r\n")
    assert closed_by_server(extra, 5), "a 65th connection was served"
    extra.close()
    d.wait_metric("refused", 1)
    # the open streams kept their service
    read_until(streams[0], b"event: heartbeat", 10)
    for s in streams[1:]:
        s.close()
    for _ in deadline_loop(10, "a connection to be served once others closed"):
        try:
            status, _ = http_get(d.url("/summary.json"), timeout=2)
            if status == 200:
                break
        except OSError:
            time.sleep(0.1)
    streams[0].close()
    print("connection limit: the 65th connection refused and counted; served again after")


def test_silent_client(d):
    dropped = d.metric("dropped")
    s = socket.create_connection(("127.0.0.1", d.port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # half a request, then silence
    start = time.monotonic()
    assert closed_by_server(s, 15), "a silent client kept its connection"
    took = time.monotonic() - start
    s.close()
    d.wait_metric("dropped", dropped + 1)
    print(f"silent client: closed after {took:.1f} s, counted")


def test_oversized_header(d):
    dropped = d.metric("dropped")
    s = socket.create_connection(("127.0.0.1", d.port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 65536 + b"\r\n\r\n")
    reply = b""
    s.settimeout(5)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    except (ConnectionResetError, BrokenPipeError, socket.timeout):
        pass
    s.close()
    status = reply.split(b"\r\n", 1)[0]
    assert not status.startswith(b"HTTP/1.1 200"), f"an oversized header was served: {status!r}"
    d.wait_metric("dropped", dropped + 1)
    print(f"oversized header: refused ({status.decode(errors='replace') or 'connection closed'}), counted")


class Reader(threading.Thread):
    """Reads an event stream as fast as it comes, keeping the last 1 MiB."""

    def __init__(self, s):
        super().__init__(daemon=True)
        self.s, self.got, self.closed, self.lock = s, b"", False, threading.Lock()
        self.start()

    def run(self):
        while True:
            try:
                chunk = self.s.recv(1 << 20)
            except OSError:
                chunk = b""
            with self.lock:
                if not chunk:
                    self.closed = True
                    return
                self.got = (self.got + chunk)[-(1 << 20):]

    def wait(self, needle, seconds):
        for _ in deadline_loop(seconds, f"{needle!r} on the reading stream"):
            with self.lock:
                if needle in self.got:
                    return
                assert not self.closed, f"the reading stream was closed: {self.got[-300:]!r}"
            time.sleep(0.05)


def test_slow_stream(d):
    cut = d.metric("cut")
    # Big summaries: 60 parks whose reported residents no record backs.
    d.push([park(f"AZ-SLOW-{i:03d}", 5 + i, 10**10 + i) for i in range(60)])
    fast = Reader(open_stream(d.port))
    fast.wait(b'"parks":65', 10)
    slow = open_stream(d.port, rcvbuf=4096)
    read_until(slow, b"event: summary")  # started; from here on it reads nothing
    # One commit (and summary) per update: far more than the backlog.
    d.push([park("AZ-SLOW-000", 1000 + i) for i in range(200)], window=1)
    fast.wait(b'"park_id":"AZ-SLOW-000","reported_residents":1199', 30)
    assert closed_by_server(slow, 30), "the slow stream was not cut"
    d.wait_metric("cut", cut + 1)
    fast.s.close()
    slow.close()
    print("slow stream: cut and counted while a reading stream got every summary")


def bounds(args):
    d = Daemon(args, "[limits]\nsummary_interval_ms = 0\n")
    ok = False
    try:
        push_examples(d, args)
        test_oversized_header(d)
        test_silent_client(d)
        test_connection_limit(d)
        test_slow_stream(d)
        # the loop logs what the HTTP thread counted, at its next pass
        for what in ("refused", "closed", "cut"):
            for _ in deadline_loop(5, f"a 'web page: {what}' log line"):
                if re.search(r"web page: %s \d+" % what, d.log_text()):
                    break
                time.sleep(0.1)
        ok = True
    finally:
        ok = d.close(ok)
    return 0 if ok else 1


# ---------------------------------------------------------------- browser

class DevTools:
    """Chromium's DevTools protocol over its websocket (python3-websocket)."""

    def __init__(self, ws_url):
        import websocket  # python3-websocket
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.id = 0

    def call(self, method, **params):
        self.id += 1
        self.ws.send(json.dumps({"id": self.id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return r.get("result", {}).get("value")

    def wait(self, expression, seconds, what):
        for _ in deadline_loop(seconds, what):
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.05)


def stop_chromium(proc):
    """Ends chromium and every process of its session (the helpers it
    started write to the test's folder until they are gone), then waits
    for them all, so the folder can be removed."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in deadline_loop(10, "chromium's helper processes to end"):
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)  # a poll of their exit, with a deadline


def start_chromium(tmp):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        return None, None
    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-dev-shm-usage", "--remote-debugging-port=0", f"--user-data-dir={tmp}/chromium",
         "--window-size=1200,1000", "--hide-scrollbars", "about:blank"],
        # its singleton socket folder goes in TMPDIR: the test's, removed with it
        env=dict(os.environ, TMPDIR=tmp),
        start_new_session=True,  # its helpers (zygote, crashpad) end with it: stop_chromium
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in deadline_loop(60, "chromium's DevTools endpoint"):
        line = proc.stderr.readline()
        m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
        if m:
            return proc, int(m.group(1))
        if not line and proc.poll() is not None:
            raise AssertionError(f"chromium exited with {proc.returncode}")


def field(name):
    return f"(document.querySelector('[data-field=\"{name}\"]') || {{}}).textContent"


def browser(args):
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        print("SKIP: chromium is not installed (apt install chromium python3-websocket)")
        return SKIP
    d = Daemon(args)
    chromium, ok = None, False
    try:
        push_examples(d, args)
        chromium, port = start_chromium(d.dir)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t.get("type") == "page"]
        dt = DevTools(pages[0]["webSocketDebuggerUrl"])
        dt.call("Page.enable")
        dt.call("Page.navigate", url=d.url("/"))
        dt.wait(field("AZ.reported_residents") + " === '50'", 30, "AZ's 50 residents on the page")
        dt.wait("document.getElementById('state').dataset.state === 'live'", 10, "the live state")
        assert dt.eval(field("AZ.TJ.turnover")) == "USD 2,900,000.00", dt.eval(field("AZ.TJ.turnover"))
        assert dt.eval(field("AZ.reported_investment")) == "USD 3.8 billion"
        assert dt.eval("document.querySelectorAll('svg.chart rect').length") >= 6, "no charts"
        dt.eval("window.sameDocument = 'yes'")  # gone if the page reloads
        revision = int(dt.eval("document.getElementById('revision').textContent"))

        # 22 -> 77 residents at Sumgait: 50 - 22 + 77 = 105, without a reload.
        d.push([park("AZ-SUMGAIT-CHEM", 77)])
        pushed = time.monotonic()
        dt.wait(field("AZ.reported_residents") + " === '105'", 10, "the pushed figure on the page")
        took = time.monotonic() - pushed
        assert dt.eval("window.sameDocument") == "yes", "the page was reloaded"
        assert int(dt.eval("document.getElementById('revision').textContent")) > revision
        print(f"browser: the pushed figure appeared {took * 1000:.0f} ms after the push was acknowledged")
        assert took < 3, f"the push took {took:.1f} s to reach the page"

        # 960 x 720 pixels: small enough to keep in docs/
        shot = dt.call("Page.captureScreenshot", format="png",
                       clip={"x": 0, "y": 0, "width": 1200, "height": 900, "scale": 0.8})
        png = base64.b64decode(shot["data"])
        out = args.screenshot or os.path.join(d.dir, "page.png")
        with open(out, "wb") as f:
            f.write(png)
        print(f"browser: screenshot {out} ({len(png)} bytes)")

        # A daemon that hangs keeps the connection open but says nothing:
        # three missed heartbeats make the page stale.
        state = "document.getElementById('state').dataset.state"
        d.proc.send_signal(signal.SIGSTOP)
        try:
            dt.wait(f"{state} === 'stale'", 20, "the stale state while the daemon is stopped")
        finally:
            d.proc.send_signal(signal.SIGCONT)
        dt.wait(f"{state} === 'live'", 15, "the live state once the daemon goes on")
        print("browser: stale while the daemon was stopped (SIGSTOP), live again after")

        d.stop()
        dt.wait("document.getElementById('state').dataset.state === 'reconnecting'", 15,
                "the reconnecting state once the daemon stopped")
        assert dt.eval(field("AZ.reported_residents")) == "105", "the last figures went away"
        print("browser: the page says it is reconnecting once the daemon stops, keeping its figures")
        ok = True
    finally:
        if chromium:
            stop_chromium(chromium)
        ok = d.close(ok)
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--examples", required=True, help="client/examples")
    ap.add_argument("--screenshot", help="where the browser test saves its PNG")
    ap.add_argument("test", choices=["bounds", "browser"])
    args = ap.parse_args()
    try:
        rc = bounds(args) if args.test == "bounds" else browser(args)
    except AssertionError as e:
        print(f"FAIL: {e}")
        return 1
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
