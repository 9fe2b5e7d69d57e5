#!/usr/bin/env python3
"""The demo service of the shadow exercise: answers every request with its
version ("myapp v1") and logs one line per request on stdout, saying whether
it is a mirrored copy (it carries mirror's marker header, X-Mirrored-By).

    myapp.py --name v2 --port 9000

Standard library only: it runs on any machine with python3.
"""

import argparse
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARKER = "X-Mirrored-By"


class Handler(BaseHTTPRequestHandler):
    server_version = "myapp"
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = f"myapp {self.server.app_name}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Version", self.server.app_name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _answer

    def log_request(self, code="-", size="-"):
        marker = self.headers.get(MARKER)
        origin = f"mirrored by {marker}" if marker else "direct"
        host = self.headers.get("Host", "-")
        client = self.client_address[0].removeprefix("::ffff:")
        print(
            f"{self.server.app_name}: {self.command} {self.path} host={host} "
            f"from={client} status={code} ({origin})",
            flush=True,
        )

    def log_message(self, format, *args):  # errors only; requests above
        print(f"{self.server.app_name}: {format % args}", file=sys.stderr, flush=True)


class DualStackServer(ThreadingHTTPServer):
    """Listens on [::] for IPv6 and IPv4 alike (`curl localhost` may try
    ::1 first); falls back to 0.0.0.0 where IPv6 is off."""

    daemon_threads = True
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
            ThreadingHTTPServer.daemon_threads = True
            server = ThreadingHTTPServer(("0.0.0.0", args.port), Handler)
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
