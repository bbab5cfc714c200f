#!/usr/bin/env bash
# Runs wxcloudrun-sidecar and Prometheus in agent mode side by side against the same
# 10,000-series target, scraping every second and remote-writing to the same receiver (a real
# Prometheus), then prints the resident memory and CPU seconds of each.
#
#   scripts/compare-agent.sh [SECONDS]        (default 60; needs python3 and Debian's prometheus)
#
# Everything listens on 127.0.0.1 and stops when the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
sidecar=${SIDECAR:-target/release/wxcloudrun-sidecar}
[ -x "$sidecar" ] || cargo build --release -p wxcloudrun-sidecar
command -v prometheus >/dev/null || { echo "prometheus not found (apt-get install -y prometheus)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
target_port=$(free_port); receiver_port=$(free_port); agent_port=$(free_port); admin_port=$(free_port)

# The page: 500 duration histograms (18 series each) by route, status and app, plus 500
# counters and 500 gauges: 10,000 series, ~2.4 MB.
mkdir -p "$work/www"
python3 - "$work/www/metrics" <<'PY'
import sys
buckets = ["0.005","0.01","0.025","0.05","0.075","0.1","0.25","0.5","0.75","1","2.5","5","7.5","10","15","30"]
out = ["# TYPE http_server_request_duration_seconds histogram"]
for route in range(20):
    for status in ["200","201","404","500","503"]:
        for app in range(5):
            labels = (f'error_type="",http_request_method="GET",http_response_status_code="{status}",'
                      f'http_route="/api/v1/resource{route}/{{id}}",wx_access_node="10.8.0.{app}",'
                      f'wx_appid="wx00000000000000{app:02}",wx_service="orders",wx_source="wx_client"')
            c = 0
            for i, le in enumerate(buckets):
                c += (route + app + i) % 7
                out.append(f'http_server_request_duration_seconds_bucket{{{labels},le="{le}"}} {c}')
            out.append(f'http_server_request_duration_seconds_bucket{{{labels},le="+Inf"}} {c}')
            out.append(f'http_server_request_duration_seconds_sum{{{labels}}} {c/3}')
            out.append(f'http_server_request_duration_seconds_count{{{labels}}} {c}')
out.append("# TYPE jobs_processed_total counter")
out += [f'jobs_processed_total{{queue="q{i}",worker="w{i%8}"}} {i*17}' for i in range(500)]
out.append("# TYPE queue_depth gauge")
out += [f'queue_depth{{queue="q{i}"}} {i%50}' for i in range(500)]
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$target_port" >/dev/null 2>&1 &
pids+=($!)

mkdir -p "$work/receiver"
echo "global: {scrape_interval: 1m}" > "$work/receiver.yml"
prometheus --config.file="$work/receiver.yml" --storage.tsdb.path="$work/receiver" \
  --web.listen-address="127.0.0.1:$receiver_port" --web.enable-remote-write-receiver \
  --log.level=warn >/dev/null 2>&1 &
pids+=($!)

cat > "$work/agent.yml" <<YML
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: target
    static_configs: [{targets: ['127.0.0.1:$target_port']}]
remote_write:
  - url: http://127.0.0.1:$receiver_port/api/v1/write
YML
sleep 2
prometheus --enable-feature=agent --config.file="$work/agent.yml" --storage.agent.path="$work/agent" \
  --web.listen-address="127.0.0.1:$agent_port" --log.level=warn >/dev/null 2>&1 &
agent=$!; pids+=($agent)
"$sidecar" --scrape-url "http://127.0.0.1:$target_port/metrics" --scrape-interval 1s \
  --scrape-timeout 900ms --remote-write-url "http://127.0.0.1:$receiver_port/api/v1/write" \
  --admin-addr "127.0.0.1:$admin_port" >/dev/null 2>&1 &
sidecar_pid=$!; pids+=($sidecar_pid)

echo "running both for ${seconds}s against a $(wc -l < "$work/www/metrics")-line page..."
sleep "$seconds"

ticks=$(getconf CLK_TCK)
report() {
  local name=$1 pid=$2
  local rss hwm cpu
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
  cpu=$(awk -v t="$ticks" '{printf "%.2f", ($14 + $15) / t}' "/proc/$pid/stat")
  awk -v n="$name" -v r="$rss" -v h="$hwm" -v c="$cpu" \
    'BEGIN {printf "%-22s rss_mib=%7.1f peak_rss_mib=%7.1f cpu_seconds=%6s\n", n, r/1024, h/1024, c}'
}
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
report "wxcloudrun-sidecar" "$sidecar_pid"
report "prometheus-agent" "$agent"
# Both must have delivered: series from each sender at the receiver.
python3 - "$receiver_port" <<'PY'
import json, sys, urllib.request, urllib.parse
q = urllib.parse.quote('count by (job) ({__name__="jobs_processed_total"}) or count({__name__="jobs_processed_total", job=""})')
body = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/api/v1/query?query={q}"))
for r in body["data"]["result"]:
    print(f"receiver: {r['metric'].get('job', '(sidecar, no job label)')}: {r['value'][1]} jobs_processed_total series")
PY
