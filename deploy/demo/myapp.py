#!/usr/bin/env python3
"""The demo service of the shadow exercise: answers every request with its
version ("myapp v1") and logs one line per request on stdout, saying whether
it is a mirrored copy (it carries mirror's marker header, X-Mirrored-By).

    myapp.py --name v2 --port 9000

A request with a body logs its size too, and `chunked` when it came in
chunks (`body=65536 chunked`). Keep-alive works for HTTP/1.1 and for
HTTP/1.0 clients that ask for it (ab -k).

Standard library only: it runs on any machine with python3.
"""

import argparse
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARKER = "X-Mirrored-By"
# One line per request, whole, whatever the threads do.
LOG = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server_version = "myapp"
    protocol_version = "HTTP/1.1"

    def handle_one_request(self):
        self.body_bytes, self.chunked = 0, False
        super().handle_one_request()

    def _read_body(self):
        """Reads the request's body to its end (Content-Length or chunked):
        a body left unread would be taken for the next request."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            size = 0
            while True:
                chunk = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if chunk == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return size, True
                size += len(self.rfile.read(chunk))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        return length, False

    def _answer(self):
        self.body_bytes, self.chunked = self._read_body()
        body = f"myapp {self.server.app_name}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Version", self.server.app_name)
        if self.request_version == "HTTP/1.0" and not self.close_connection:
            # An HTTP/1.0 client keeps the connection only if told so.
            self.send_header("Connection", "keep-alive")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _answer

    def log_request(self, code="-", size="-"):
        headers = getattr(self, "headers", None) or {}
        marker = headers.get(MARKER)
        origin = f"mirrored by {marker}" if marker else "direct"
        host = headers.get("Host", "-")
        client = self.client_address[0].removeprefix("::ffff:")
        body = ""
        if self.body_bytes or self.chunked:
            body = f" body={self.body_bytes}" + (" chunked" if self.chunked else "")
        line = (
            f"{self.server.app_name}: {self.command} {self.path} host={host} "
            f"from={client} status={code}{body} ({origin})\n"
        )
        with LOG:
            sys.stdout.write(line)
            sys.stdout.flush()

    def log_message(self, format, *args):  # errors only; requests above
        print(f"{self.server.app_name}: {format % args}", file=sys.stderr, flush=True)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # Shadows open several connections at once: a backlog of 5 (the
    # default) would drop their SYNs.
    request_queue_size = 256


class DualStackServer(Server):
    """Listens on [::] for IPv6 and IPv4 alike (`curl localhost` may try
    ::1 first); falls back to 0.0.0.0 where IPv6 is off."""

    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="version to answer with, e.g. v2")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        server = DualStackServer(("::", args.port), Handler)
    except OSError as err:
        if not socket.has_ipv6 or err.errno in (97, 99):  # EAFNOSUPPORT, EADDRNOTAVAIL
            server = Server(("0.0.0.0", args.port), Handler)
        else:
            raise
    server.app_name = args.name
    print(f"{args.name}: listening on port {args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
