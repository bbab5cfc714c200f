#!/usr/bin/env bash
# What HTTPS with a client certificate costs the sidecar: two sidecars side by side, scraping the
# same 10,000-series page every second, one remote-writing over plain HTTP to a real Prometheus,
# the other over HTTPS + mTLS to a second Prometheus behind --web.config.file (certificates from a
# throw-away CA made with openssl). Prints each sidecar's CPU seconds and resident memory, their
# ratio, and how many TCP connections each held to its receiver (1 = one TLS session reused).
#
#   scripts/compare-tls.sh [SECONDS]        (default 60; needs python3, openssl, curl and Debian's prometheus;
#                                            SIDECAR=path picks another sidecar binary)
#
# Everything listens on 127.0.0.1 and stops when the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
sidecar=${SIDECAR:-target/release/wxcloudrun-sidecar}
[ -x "$sidecar" ] || cargo build --release -p wxcloudrun-sidecar
for tool in prometheus python3 openssl; do
  command -v "$tool" >/dev/null || { echo "$tool not found" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
target_port=$(free_port); plain_port=$(free_port); tls_port=$(free_port)
admin_plain=$(free_port); admin_tls=$(free_port)

# Certificates: a CA, the receiver's (SAN 127.0.0.1), the sidecar's client certificate.
pki="$work/pki"; mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=test-ca \
  -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
for who in server client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$who" \
    -keyout "$pki/$who.key" -out "$pki/$who.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=%s\n' \
    "$([ $who = server ] && echo serverAuth || echo clientAuth)" > "$pki/$who.ext"
  openssl x509 -req -in "$pki/$who.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 2 -extfile "$pki/$who.ext" -out "$pki/$who.pem" 2>/dev/null
done

# The same page as scripts/compare-agent.sh: 10,000 series, ~2.4 MB.
mkdir -p "$work/www"
python3 - "$work/www/metrics" <<'PY'
import sys
buckets = ["0.005","0.01","0.025","0.05","0.075","0.1","0.25","0.5","0.75","1","2.5","5","7.5","10","15","30"]
out = ["# TYPE http_server_request_duration_seconds histogram"]
for route in range(20):
    for status in ["200","201","404","500","503"]:
        for app in range(5):
            labels = (f'http_route="/api/v1/resource{route}/{{id}}",http_response_status_code="{status}",'
                      f'wx_appid="wx00000000000000{app:02}",wx_service="orders"')
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

echo "global: {scrape_interval: 1m}" > "$work/receiver.yml"
cat > "$work/web.yml" <<YML
tls_server_config:
  cert_file: $pki/server.pem
  key_file: $pki/server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: $pki/ca.pem
YML
for side in plain tls; do
  port=$plain_port; extra=()
  [ $side = tls ] && { port=$tls_port; extra=(--web.config.file="$work/web.yml"); }
  prometheus --config.file="$work/receiver.yml" --storage.tsdb.path="$work/$side" \
    --web.listen-address="127.0.0.1:$port" --web.enable-remote-write-receiver "${extra[@]}" \
    --log.level=warn >/dev/null 2>&1 &
  pids+=($!)
done
cat > "$work/tls.toml" <<TOML
[[remote_write]]
url = "https://127.0.0.1:$tls_port/api/v1/write"
tls_config = { ca_file = "$pki/ca.pem", cert_file = "$pki/client.pem", key_file = "$pki/client.key" }
TOML
sleep 2
common=(--scrape-url "http://127.0.0.1:$target_port/metrics" --scrape-interval 1s --scrape-timeout 900ms)
"$sidecar" "${common[@]}" --remote-write-url "http://127.0.0.1:$plain_port/api/v1/write" \
  --admin-addr "127.0.0.1:$admin_plain" >"$work/plain.log" 2>&1 &
plain_pid=$!; pids+=($plain_pid)
"$sidecar" "${common[@]}" --config "$work/tls.toml" --admin-addr "127.0.0.1:$admin_tls" >"$work/tls.log" 2>&1 &
tls_pid=$!; pids+=($tls_pid)

echo "running both for ${seconds}s..."
# Distinct local ports each sidecar used towards its receiver, sampled every 5 s.
: > "$work/conns"
for _ in $(seq 1 $((seconds / 5))); do
  sleep 5
  ss -tnH state established "( dport = :$plain_port )" | awk '{print "plain", $3}' >> "$work/conns"
  ss -tnH state established "( dport = :$tls_port )" | awk '{print "tls", $3}' >> "$work/conns"
done

ticks=$(getconf CLK_TCK)
cpu() { awk -v t="$ticks" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
rss() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
delivered() {
  curl -s "$@" --data-urlencode 'query=count({__name__="jobs_processed_total"})' \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)'
}
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
p=$(cpu $plain_pid); t=$(cpu $tls_pid)
echo "plain-http  cpu_seconds=$p rss_mib=$(rss $plain_pid) connections=$(grep '^plain' "$work/conns" | sort -u | wc -l) delivered_series=$(delivered "http://127.0.0.1:$plain_port/api/v1/query")"
echo "https-mtls  cpu_seconds=$t rss_mib=$(rss $tls_pid) connections=$(grep '^tls' "$work/conns" | sort -u | wc -l) delivered_series=$(delivered --cacert "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key" "https://127.0.0.1:$tls_port/api/v1/query")"
awk -v p="$p" -v t="$t" 'BEGIN {printf "cpu ratio https-mtls / plain-http = %.3f\n", t / p}'
