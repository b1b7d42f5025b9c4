#!/usr/bin/env python3
"""An HTTP/2 client for ringway's tests, built on the `h2` package's H2Connection state machine
(python-hyper/h2, installed by .ci/run). tests/h2_python.rs runs it as

    python3 tests/h2_client.py SCENARIO ADDR [options]

Each run opens one connection to ADDR (h2c with prior knowledge; `--tls-ca FILE --sni NAME` for
TLS with ALPN h2), plays one scenario and prints one JSON line on stdout: per stream its status,
headers, trailers, body length and SHA-256, DATA frame count, whether END_STREAM came on HEADERS,
a reset's error code, and the order in which streams ended. The h2 state machine itself fails
the run (exit 1, with the error in the JSON) when ringway breaks the protocol, for instance
sends more DATA than a window allows. A large transfer also reports its progress on stderr
(`progress BYTES`), so the test can compare it with what the backend has written or read. Every
socket operation has a timeout.
"""

import argparse
import hashlib
import json
import random
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

# Bytes read from the socket at a time.
RECV_BYTES = 65536
# A large transfer reports its progress on stderr (`progress BYTES`) every this many bytes.
PROGRESS_STEP_BYTES = 1 << 20


class Stream:
    """What one stream received."""

    def __init__(self, sid, path):
        self.sid = sid
        self.path = path
        self.status = None
        self.headers = {}
        self.trailers = {}
        self.sha = hashlib.sha256()
        self.body_bytes = 0
        self.body = bytearray()
        self.keep_body_bytes_max = 64 * 1024
        self.data_frames = 0
        self.end_on_headers = False
        self.ended = False
        self.reset = None
        self.informational = []

    def done(self):
        return self.ended or self.reset is not None

    def result(self):
        out = {
            "stream": self.sid,
            "path": self.path,
            "status": self.status,
            "headers": self.headers,
            "trailers": self.trailers,
            "body_bytes": self.body_bytes,
            "body_sha256": self.sha.hexdigest(),
            "data_frames": self.data_frames,
            "end_on_headers": self.end_on_headers,
            "ended": self.ended,
            "reset": self.reset,
        }
        if self.body_bytes <= self.keep_body_bytes_max:
            out["body"] = self.body.decode("utf-8", "replace")
        if self.informational:
            out["informational"] = self.informational
        return out


class Client:
    """One HTTP/2 connection driven by H2Connection over a blocking socket with timeouts."""

    # The scenario's client, for what it got before an error.
    last = None

    def __init__(self, args, settings=None):
        host, port = args.addr.rsplit(":", 1)
        self.deadline = time.monotonic() + args.timeout
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if args.tls_ca:
            ctx = ssl.create_default_context(cafile=args.tls_ca)
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname=args.sni or host)
            if sock.selected_alpn_protocol() != "h2":
                raise RuntimeError(f"ALPN chose {sock.selected_alpn_protocol()!r}, not h2")
        self.sock = sock
        self.authority = args.authority or args.addr
        self.scheme = "https" if args.tls_ca else "http"
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=cfg)
        values = {h2.settings.SettingCodes.ENABLE_PUSH: 0}
        values.update(settings or {})
        # Set before the preface goes out, so the first SETTINGS carries them and the h2 state
        # machine enforces them on what ringway sends from the first frame on.
        self.conn.local_settings = h2.settings.Settings(client=True, initial_values=values)
        self.conn.initiate_connection()
        Client.last = self
        self.streams = {}
        self.progress_reported = 0
        self.order = []
        self.goaway = None
        self.closed = False
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.settime()
            self.sock.sendall(data)

    def progress(self, done_bytes):
        """Tells the test how far a large transfer is (for comparing with the other side)."""
        if done_bytes - self.progress_reported >= PROGRESS_STEP_BYTES:
            self.progress_reported = done_bytes
            print(f"progress {done_bytes}", file=sys.stderr, flush=True)

    def settime(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("scenario deadline passed")
        self.sock.settimeout(left)

    def request(self, method, path, headers=(), end_stream=True):
        sid = self.conn.get_next_available_stream_id()
        fields = [
            (":method", method),
            (":scheme", self.scheme),
            (":authority", self.authority),
            (":path", path),
        ]
        fields.extend(headers)
        self.conn.send_headers(sid, fields, end_stream=end_stream)
        self.streams[sid] = Stream(sid, path)
        return sid

    def receive_once(self, wait_s=None):
        """One socket read (at most `wait_s`, else until the scenario deadline); False on EOF or,
        with `wait_s`, when nothing came in time."""
        if wait_s is None:
            self.settime()
        else:
            self.sock.settimeout(max(0.001, min(wait_s, self.deadline - time.monotonic())))
        try:
            data = self.sock.recv(RECV_BYTES)
        except socket.timeout:
            if wait_s is not None and time.monotonic() < self.deadline:
                return False
            raise
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            self.on_event(event)
        self.flush()
        return True

    def pump(self, until, wait_s=None):
        """Reads until `until()` holds; with `wait_s`, gives up (False) after that long."""
        end = None if wait_s is None else time.monotonic() + wait_s
        while not until():
            if self.closed:
                return False
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return False
            self.receive_once(left)
        return True

    def on_event(self, ev):
        s = self.streams.get(getattr(ev, "stream_id", None) or 0)
        if isinstance(ev, h2.events.ResponseReceived):
            s.status = int(dict(ev.headers)[":status"])
            s.headers = {n: v for n, v in ev.headers if not n.startswith(":")}
            if ev.stream_ended is not None:
                s.end_on_headers = True
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            s.informational.append(int(dict(ev.headers)[":status"]))
        elif isinstance(ev, h2.events.DataReceived):
            s.data_frames += 1
            s.sha.update(ev.data)
            s.body_bytes += len(ev.data)
            self.progress(s.body_bytes)
            if len(s.body) < s.keep_body_bytes_max:
                s.body.extend(ev.data[: s.keep_body_bytes_max - len(s.body)])
            # The library's window manager sends WINDOW_UPDATE once half a window is consumed.
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            s.trailers = dict(ev.headers)
        elif isinstance(ev, h2.events.StreamEnded):
            s.ended = True
            self.order.append(s.sid)
        elif isinstance(ev, h2.events.StreamReset):
            if s is not None:
                s.reset = int(ev.error_code)
                self.order.append(s.sid)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = int(ev.error_code)
            self.closed = True

    def send_body(self, sid, chunks, end_stream=True):
        """Sends `chunks` (an iterator of bytes) on `sid` within ringway's windows; returns the
        SHA-256 and length of what went out."""
        sha = hashlib.sha256()
        sent = 0
        for chunk in chunks:
            sha.update(chunk)
            view = memoryview(chunk)
            while view:
                room = min(
                    self.conn.local_flow_control_window(sid),
                    self.conn.max_outbound_frame_size,
                )
                if room <= 0:
                    # Wait for ringway's WINDOW_UPDATE (it opens as bytes reach the backend).
                    self.receive_once()
                    if self.closed:
                        raise RuntimeError(f"connection closed after {sent} body bytes")
                    s = self.streams[sid]
                    if s.reset is not None:
                        raise RuntimeError(f"stream reset ({s.reset}) after {sent} body bytes")
                    continue
                n = min(room, len(view))
                self.conn.send_data(sid, view[:n].tobytes())
                self.flush()
                sent += n
                view = view[n:]
                self.progress(sent)
        if end_stream:
            self.conn.end_stream(sid)
            self.flush()
        return sha.hexdigest(), sent

    def close(self):
        try:
            self.conn.close_connection()
            self.flush()
        except (OSError, h2.exceptions.ProtocolError):
            pass
        self.sock.close()

    def result(self, **extra):
        out = {
            "ok": True,
            "streams": [s.result() for s in self.streams.values()],
            "order": self.order,
            "goaway": self.goaway,
            "remote_initial_window": self.conn.remote_settings.initial_window_size,
            "remote_max_concurrent_streams": self.conn.remote_settings.max_concurrent_streams,
        }
        out.update(extra)
        return out


def random_chunks(seed, total, chunk_bytes=64 * 1024):
    rnd = random.Random(seed)
    left = total
    while left > 0:
        n = min(chunk_bytes, left)
        yield rnd.randbytes(n)
        left -= n


def all_done(c, sids):
    return lambda: all(c.streams[s].done() for s in sids)


def scenario_trailers(args):
    """POST "hello trailers" (no content-length unless `--with-length`) in two DATA frames, then
    trailers on a HEADERS with END_STREAM."""
    c = Client(args)
    headers = [("content-type", "text/plain")]
    if args.with_length:
        headers.append(("content-length", "14"))
    sid = c.request("POST", args.path, headers, end_stream=False)
    sha, sent = c.send_body(sid, [b"hello ", b"trailers"], end_stream=False)
    c.conn.send_headers(sid, [("x-checksum", "abc123"), ("x-count", "2")], end_stream=True)
    c.flush()
    c.pump(all_done(c, [sid]))
    return c.result(sent_sha256=sha, sent_bytes=sent)


def scenario_get(args):
    """`--count` requests for each `--paths` entry (`PATH` for a GET, `METHOD PATH` otherwise),
    all opened before any response is read."""
    c = Client(args)
    sids = []
    for _ in range(args.count):
        for entry in args.paths:
            method, _, path = entry.rpartition(" ")
            headers = [(k, v) for k, v in args.header]
            sids.append(c.request(method or "GET", path, headers))
    c.flush()
    c.pump(all_done(c, sids))
    return c.result()


def scenario_download(args):
    """One GET read through a stream window of `--window` bytes (SETTINGS_INITIAL_WINDOW_SIZE)
    and the 65,535-byte default connection window, never raised: the library hands back window
    as each DATA frame is consumed, half a window at a time."""
    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: args.window}
    c = Client(args, settings=settings)
    sid = c.request("GET", args.path)
    c.flush()
    started = time.monotonic()
    c.pump(all_done(c, [sid]))
    return c.result(seconds=round(time.monotonic() - started, 3))


def scenario_upload(args):
    """One POST of `--bytes` random bytes (seeded) with a content-length, sent as ringway's
    windows allow."""
    c = Client(args)
    headers = [("content-length", str(args.bytes)), ("content-type", "application/octet-stream")]
    sid = c.request("POST", args.path, headers, end_stream=False)
    c.flush()
    started = time.monotonic()
    sha, sent = c.send_body(sid, random_chunks(args.seed, args.bytes))
    c.pump(all_done(c, [sid]))
    return c.result(sent_sha256=sha, sent_bytes=sent, seconds=round(time.monotonic() - started, 3))


def scenario_slow_fast(args):
    """Stream 1 goes to a backend that answers only once it is released; stream 3 to a fast one.
    Once stream 3 has ended (or `--fast-wait` passed), stream 5 asks for the release. With
    streams served concurrently the fast stream ends first; served one at a time, it waits for
    the slow one (whose backend gives up waiting for the release after a while)."""
    c = Client(args)
    slow = c.request("GET", args.slow)
    fast = c.request("GET", args.fast)
    c.flush()
    fast_in_time = c.pump(all_done(c, [fast]), wait_s=args.fast_wait)
    release = c.request("GET", args.release)
    c.flush()
    c.pump(all_done(c, [slow, fast, release]))
    return c.result(fast_in_time=fast_in_time)


SCENARIOS = {
    "trailers": scenario_trailers,
    "get": scenario_get,
    "download": scenario_download,
    "upload": scenario_upload,
    "slow-fast": scenario_slow_fast,
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("addr", help="HOST:PORT")
    p.add_argument("--timeout", type=float, default=25.0, help="seconds for the whole scenario")
    p.add_argument("--tls-ca", help="CA file: connect with TLS, ALPN h2")
    p.add_argument("--sni", help="TLS server name (default: the host)")
    p.add_argument("--authority", help=":authority (default: ADDR)")
    p.add_argument("--path", default="/")
    p.add_argument("--paths", nargs="+", default=["/"])
    p.add_argument("--count", type=int, default=1, help="get: requests per path")
    p.add_argument("--header", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    p.add_argument("--window", type=int, default=1024, help="download: stream window bytes")
    p.add_argument("--bytes", type=int, default=1 << 20, help="upload: body bytes")
    p.add_argument("--seed", type=int, default=1, help="upload: body seed")
    p.add_argument("--with-length", action="store_true", help="trailers: send content-length")
    p.add_argument("--slow", default="/slow")
    p.add_argument("--fast", default="/fast")
    p.add_argument("--release", default="/release")
    p.add_argument("--fast-wait", type=float, default=8.0, help="slow-fast: seconds")
    args = p.parse_args()
    try:
        out = SCENARIOS[args.scenario](args)
        code = 0
    except (OSError, TimeoutError, RuntimeError, h2.exceptions.H2Error) as e:
        out = Client.last.result() if Client.last is not None else {}
        out.update(ok=False, error=f"{type(e).__name__}: {e}")
        code = 1
    print(json.dumps(out))
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
