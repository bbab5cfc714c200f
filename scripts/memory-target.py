#!/usr/bin/env python3
"""A loopback scrape target for measuring the sidecar's memory from outside (issue 16).

Serves on 127.0.0.1:PORT/metrics the page named in KIND_FILE (read on every request, so a
driver can switch pages between scrapes): small, 10k, 100k, 1m, names, long, endless, trickle.
`small PHASE` serves `small{phase="PHASE"} 1`, so the driver can ask Prometheus when the first
sample of a phase arrived. The pages are the shapes of benches/pages.rs (the 10k page is
benches/page.rs byte for byte), made before the port is bound, so no scrape waits for Python.
Binds loopback only. Not part of the product; used by scripts/memory-rss.sh.
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
    """The 10,000-series page of benches/page.rs, byte for byte."""
    buckets = ["0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1", "2.5", "5",
               "7.5", "10", "15", "30"]
    out = ["# HELP http_server_request_duration_seconds Duration of HTTP server requests.\n",
           "# TYPE http_server_request_duration_seconds histogram\n"]
    for route in range(20):
        for status in ("200", "201", "404", "500", "503"):
            for app in range(5):
                labels = (f'error_type="",http_request_method="GET",http_response_status_code="{status}",'
                          f'http_route="/api/v1/resource{route}/{{id}}",wx_access_node="10.8.0.{app}",'
                          f'wx_appid="wx00000000000000{app:02}",wx_service="orders",wx_source="wx_client"')
                cumulative = 0
                for i, le in enumerate(buckets):
                    cumulative += (route + app + i) % 7
                    out.append(f'http_server_request_duration_seconds_bucket{{{labels},le="{le}"}} {cumulative}\n')
                out.append(f'http_server_request_duration_seconds_bucket{{{labels},le="+Inf"}} {cumulative}\n')
                out.append(f"http_server_request_duration_seconds_sum{{{labels}}} {cumulative // 3}.25\n")
                out.append(f"http_server_request_duration_seconds_count{{{labels}}} {cumulative}\n")
    out.append("# TYPE jobs_processed_total counter\n")
    for i in range(500):
        out.append(f'jobs_processed_total{{queue="q{i}",worker="w{i % 8}"}} {i * 17}\n')
    out.append("# TYPE queue_depth gauge\n")
    for i in range(500):
        out.append(f'queue_depth{{queue="q{i}"}} {i % 50}\n')
    return "".join(out)


PAGES = {
    "10k": ten_k,
    "100k": lambda: series(100_000),
    "1m": lambda: "# TYPE m gauge\n" + "".join(f'm{{i="{i}"}} 1\n' for i in range(990_000)),
    "names": lambda: "".join(f"metric_name_{i:07} {i % 10}\n" for i in range(99_000)),
    "long": lambda: "".join(f'long_label{{v="{i:07}{"x" * 440}"}} 1\n' for i in range(60_000)),
}
BODIES = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        with open(KIND_FILE) as f:
            kind, _, phase = f.read().strip().partition(" ")
        if kind in ("endless", "trickle"):
            return self.stream(kind)
        if kind == "small":
            body = f'# TYPE small gauge\nsmall{{phase="{phase}"}} 1\n'.encode()
        else:
            body = BODIES[kind]
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
    for name, make in PAGES.items():
        BODIES[name] = make().encode()
        print(f"{name}: {len(BODIES[name])} bytes", file=sys.stderr, flush=True)
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
