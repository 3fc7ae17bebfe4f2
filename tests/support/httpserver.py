"""
A real HTTP server on 127.0.0.1 for tests and benchmarks: threaded, counts requests per path, and misbehaves on
demand (truncated bodies, connection resets, stalls, error statuses for the first N requests, redirects).

    server = LocalHTTPServer().start()
    server.serve("/kubelet", b"...")                          # 200 with Content-Length
    server.serve("/flaky", b"...", status=500, times=1)       # 500 once, then 200
    server.serve("/cut", b"...", fault="truncate")            # Content-Length of the whole body, half of it sent
    server.serve("/rst", b"...", fault="reset")               # half the body, then a TCP reset
    server.serve("/slow", b"...", fault="stall", stall=5)     # half the body, then silence for 5 s
    server.redirect("/a", "/b")                               # 302 to /b
    server.serve_file("/big", "/tmp/big.bin")                 # streamed from disk (sendfile)
    server.serve_directory("/mirror", "/srv/mirror")          # static files under a prefix
    server.count("/kubelet"), server.count()                  # requests seen (per path / all)
    server.stop()

The ``http_server`` pytest fixture starts one per test, clears proxy variables so requests to 127.0.0.1 go
direct, and always stops it. Import it into a test module: ``from tests.support.httpserver import http_server``.
"""

import collections
import http.server
import os
import posixpath
import socket
import struct
import threading
import urllib.parse

FAULTS = (None, "truncate", "reset", "stall", "stall_headers", "no_length")


class Route:
    """What one path answers."""

    def __init__(self, body=b"", status=200, headers=None, fault=None, times=None, stall=5.0, location=None, file=None):
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; use one of {FAULTS}")
        self.body, self.status, self.headers = body, status, dict(headers or {})
        self.fault, self.times, self.stall, self.location, self.file = fault, times, stall, location, file
        self.hits = 0


class LocalHTTPServer:
    """A threaded HTTP/1.0 server bound to an ephemeral port on 127.0.0.1."""

    def __init__(self):
        self.routes = {}
        self.directories = {}
        self.counts = collections.Counter()
        self.requests = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = None
        self._thread = None

    # -- lifecycle ----------------------------------------------------------------------------------------------------
    def start(self):
        handler = _make_handler(self)
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, client_address: None
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="LocalHTTPServer", daemon=True
        )
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- configuration ------------------------------------------------------------------------------------------------
    @property
    def base_url(self):
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def netloc(self):
        return self.base_url.split("://", 1)[1]

    def url(self, path):
        return self.base_url + path

    def serve(self, path, body=b"", **kwargs):
        """Answer GET ``path`` with ``body``; see Route for status/fault/times/stall/headers. Returns the URL."""
        self.routes[path] = Route(body=body, **kwargs)
        return self.url(path)

    def serve_file(self, path, filename, **kwargs):
        self.routes[path] = Route(file=filename, **kwargs)
        return self.url(path)

    def redirect(self, path, location, status=302):
        self.routes[path] = Route(status=status, location=location)
        return self.url(path)

    def serve_directory(self, prefix, directory):
        """Serve the files under ``directory`` at ``<prefix>/<relative path>`` (a static mirror)."""
        self.directories[prefix.rstrip("/")] = os.path.abspath(directory)
        return self.url(prefix.rstrip("/"))

    def count(self, path=None):
        with self._lock:
            return sum(self.counts.values()) if path is None else self.counts[path]

    def reset_counts(self):
        with self._lock:
            self.counts.clear()
            self.requests.clear()

    # -- internals ----------------------------------------------------------------------------------------------------
    def _record(self, path):
        with self._lock:
            self.counts[path] += 1
            self.requests.append(path)

    def _lookup_file(self, path):
        for prefix, directory in self.directories.items():
            if path.startswith(prefix + "/"):
                rel = posixpath.normpath(urllib.parse.unquote(path[len(prefix) + 1 :]))
                if rel.startswith(("..", "/")):
                    return None
                candidate = os.path.join(directory, *rel.split("/"))
                return candidate if os.path.isfile(candidate) else None
        return None


def _make_handler(server):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args):  # keep test output clean
            pass

        def do_GET(self):  # noqa: N802 - http.server API
            path = urllib.parse.urlsplit(self.path).path
            server._record(path)
            route = server.routes.get(path)
            if route is None:
                filename = server._lookup_file(path)
                if filename is None:
                    return self._plain(404, b"not found\n")
                route = Route(file=filename)
            with server._lock:
                route.hits += 1
                active = route.times is None or route.hits <= route.times
            if route.location:
                self.send_response(route.status)
                self.send_header("Location", route.location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if active and route.status != 200:
                return self._plain(route.status, f"status {route.status}\n".encode())
            fault = route.fault if active else None
            if route.file:
                return self._file(route)
            return self._body(route, fault)

        def _plain(self, status, body):
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _file(self, route):
            size = os.path.getsize(route.file)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            with open(route.file, "rb") as fh:
                self.connection.sendfile(fh)

        def _body(self, route, fault):
            body = route.body
            if fault == "stall_headers":
                server._stopping.wait(route.stall)
                return self._hang_up()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            for key, value in route.headers.items():
                self.send_header(key, value)
            if fault != "no_length":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if fault in (None, "no_length"):
                self.wfile.write(body)
                return None
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if fault == "stall":
                server._stopping.wait(route.stall)
                return self._hang_up()
            if fault == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return self._hang_up()

        def _hang_up(self):
            self.close_connection = True
            try:
                self.connection.close()
            except OSError:
                pass

        def finish(self):
            try:
                super().finish()
            except OSError:
                pass

    return Handler


try:
    import pytest
except ImportError:  # pragma: no cover - the benchmark does not need pytest
    pytest = None

if pytest is not None:

    @pytest.fixture
    def http_server(monkeypatch):
        """A LocalHTTPServer for one test; proxies are bypassed for 127.0.0.1; stopped afterwards."""
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        server = LocalHTTPServer().start()
        try:
            yield server
        finally:
            server.stop()
