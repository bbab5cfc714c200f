#!/usr/bin/env python3
"""A loopback scrape target for measuring the sidecar's memory from outside (issue 16).

Serves on 127.0.0.1:PORT/metrics the page named in KIND_FILE (read on every request, so a
driver can switch pages between scrapes): small, 10k, 100k, 1m, names, long, endless, trickle.
Not part of the product; used by scripts/memory-rss.sh.
"""

import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def series(n):
    return "# TYPE app_requests_total counter\n" + "".join(
        f'app_requests_total{{method="GET",route="/api/v1/items/{{id}}",status="200",user="u{i:07}"}} {i % 1000}\n'
        for i in range(n)
    )


def ten_k():
    out = ["# TYPE http_server_request_duration_seconds histogram\n"]
    les = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
    for route in range(20):
        for status in ("200", "201", "404", "500", "503"):
            for app in range(7):
                labels = (f'http_route="/api/v1/resource{route}/{{id}}",http_response_status_code="{status}",'
                          f'wx_appid="wx00000000000000{app:02}",wx_service="orders"')
                for le in les:
                    out.append(f'http_server_request_duration_seconds_bucket{{{labels},le="{le}"}} 1\n')
                out.append(f"http_server_request_duration_seconds_sum{{{labels}}} 1\n")
                out.append(f"http_server_request_duration_seconds_count{{{labels}}} 1\n")
    return "".join(out)


PAGES = {
    "small": lambda: "# TYPE small gauge\nsmall 1\n",
    "10k": ten_k,
    "100k": lambda: series(100_000),
    "1m": lambda: "# TYPE m gauge\n" + "".join(f'm{{i="{i}"}} 1\n' for i in range(990_000)),
    "names": lambda: "".join(f"metric_name_{i:07} {i % 10}\n" for i in range(99_000)),
    "long": lambda: "".join(f'long_label{{v="{i:07}{"x" * 440}"}} 1\n' for i in range(60_000)),
}
CACHE = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        with open(KIND_FILE) as f:
            kind = f.read().strip()
        if kind in ("endless", "trickle"):
            return self.stream(kind)
        if kind not in CACHE:
            CACHE[kind] = PAGES[kind]().encode()
        body = CACHE[kind]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def stream(self, kind):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        line = b'endless{i="0123456789"} 1\n' * 256
        try:
            for _ in range(100_000):  # bounded: ~670 MB at most
                if kind == "trickle":
                    chunk = b"a"
                    time.sleep(1)
                else:
                    chunk = line
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass


if __name__ == "__main__":
    PORT, KIND_FILE = int(sys.argv[1]), sys.argv[2]
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
