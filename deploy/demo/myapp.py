#!/usr/bin/env python3
"""The demo service of the shadow exercise: a small JSON API that says
which version it is (`GET /` answers {"app": "myapp", "version": "v1"}) and
logs one line per request on stdout, saying whether it is a mirrored copy
(it carries mirror's marker header, X-Mirrored-By).

    myapp.py --name v2 --port 9000
    myapp.py --name v3 --port 9001 --regression

Every version answers the same API the same way, but for a timestamp
(`served_at`, the noise a baseline exposes) and the version itself.
`--regression` plants the bugs the comparison is meant to catch: GET
/items/ID answers 500 for IDs divisible by 7, and POST /orders computes
`$.total` without the quantities.

    GET /                 {"app", "version"}
    GET /items/ID         an item (JSON)
    GET /catalog?page=N   a page of items, with served_at
    POST /orders          201, the order's total from the JSON body
    anything else         {"path", "method", "bytes"} of the request

A request with a body logs its size too, and `chunked` when it came in
chunks (`body=65536 chunked`). Keep-alive works for HTTP/1.1 and for
HTTP/1.0 clients that ask for it (ab -k).

Standard library only: it runs on any machine with python3.
"""

import argparse
import json
import socket
import sys
import threading
import time
import zlib
from urllib.parse import parse_qs, urlsplit
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARKER = "X-Mirrored-By"
# Body bytes kept to answer from (an order); the rest is read and counted.
KEPT_BODY = 64 * 1024
PRICES = {"book-7": 12.5, "pen-2": 1.25}


def price(sku):
    return PRICES.get(sku, 3.0)


def item(item_id):
    return {"id": item_id, "name": f"item {item_id}", "price": round(2.5 + item_id * 0.75, 2)}
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
            size, kept = 0, b""
            while True:
                chunk = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if chunk == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return size, True, kept
                data = self.rfile.read(chunk)
                size += len(data)
                kept = (kept + data)[:KEPT_BODY]
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        return length, False, data[:KEPT_BODY]

    def _route(self, body):
        """(status, JSON document) for the request."""
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        regression = self.server.regression
        if not parts:
            return 200, {"app": "myapp", "version": self.server.app_name}
        if parts[0] == "items" and len(parts) == 2 and parts[1].isdigit():
            item_id = int(parts[1])
            if regression and item_id % 7 == 0:
                return 500, {"error": "internal error"}
            return 200, item(item_id)
        if parts[0] == "catalog":
            page = int((parse_qs(url.query).get("page") or ["1"])[0] or 1)
            items = [item(page * 10 + i) for i in range(3)]
            return 200, {"page": page, "items": items, "served_at": time.time_ns()}
        if parts[0] == "orders" and self.command == "POST":
            try:
                order = json.loads(body or b"{}")
                lines = order.get("items", [])
                qty = (lambda line: 1) if regression else (lambda line: line.get("qty", 1))
                total = sum(qty(line) * price(line.get("sku", "")) for line in lines)
            except (ValueError, AttributeError, TypeError):
                return 400, {"error": "the order is not JSON"}
            return 201, {
                "order": zlib.crc32(body) % 100000,
                "items": len(lines),
                "total": round(total, 2),
                "served_at": time.time_ns(),
            }
        return 200, {"method": self.command, "path": url.path, "bytes": self.body_bytes}

    def _answer(self):
        self.body_bytes, self.chunked, data = self._read_body()
        status, document = self._route(data)
        body = (json.dumps(document) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
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
    parser.add_argument(
        "--regression", action="store_true", help="plant the bugs the comparison catches"
    )
    args = parser.parse_args()
    try:
        server = DualStackServer(("::", args.port), Handler)
    except OSError as err:
        if not socket.has_ipv6 or err.errno in (97, 99):  # EAFNOSUPPORT, EADDRNOTAVAIL
            server = Server(("0.0.0.0", args.port), Handler)
        else:
            raise
    server.app_name = args.name
    server.regression = args.regression
    print(f"{args.name}: listening on port {args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
