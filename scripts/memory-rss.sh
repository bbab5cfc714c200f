#!/usr/bin/env bash
# Peak and settled RSS of the release sidecar binary over the hostile pages of issue 16, from
# /proc/<pid>/status (VmHWM, VmRSS), scraping scripts/memory-target.py on loopback and remote-
# writing into a real Prometheus (/usr/bin/prometheus with --web.enable-remote-write-receiver).
#
#   scripts/memory-rss.sh path/to/wxcloudrun-sidecar [extra sidecar flags...]
#
# Per page, a fresh sidecar: 3 scrapes of the small page (steady RSS), 3 of the hostile page
# (peak = VmHWM), then the small page again (RSS one and three scrapes later). Interval 2 s.
set -euo pipefail
BIN=$1; shift
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
PROM_PORT=19390; TARGET_PORT=19391
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
echo small > "$WORK/kind"
python3 "$HERE/memory-target.py" $TARGET_PORT "$WORK/kind" &
printf 'global:\n  scrape_interval: 1m\n' > "$WORK/prometheus.yml"
/usr/bin/prometheus --config.file "$WORK/prometheus.yml" --storage.tsdb.path "$WORK/data" \
  --web.listen-address 127.0.0.1:$PROM_PORT --web.enable-remote-write-receiver \
  > "$WORK/prometheus.log" 2>&1 &
sleep 3
kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
mib() { awk -v v="$1" 'BEGIN { printf "%.1f", v / 1024 }'; }
echo "| page | steady RSS MiB | peak RSS (VmHWM) MiB | RSS 1 scrape after MiB | RSS 3 scrapes after MiB |"
echo "|---|---|---|---|---|"
for page in 10k 100k names long 1m endless trickle; do
  echo small > "$WORK/kind"
  "$BIN" --scrape-url "http://127.0.0.1:$TARGET_PORT/metrics" \
    --remote-write-url "http://127.0.0.1:$PROM_PORT/api/v1/write" \
    --scrape-interval 2s --scrape-timeout 1500ms --admin-addr 127.0.0.1:0 "$@" \
    > "$WORK/sidecar-$page.log" 2>&1 &
  pid=$!
  sleep 6; steady=$(kib $pid VmRSS)
  echo "$page" > "$WORK/kind"; sleep 6; peak=$(kib $pid VmHWM)
  echo small > "$WORK/kind"; sleep 2; after1=$(kib $pid VmRSS); sleep 4; after3=$(kib $pid VmRSS)
  kill $pid; wait $pid 2>/dev/null || true
  echo "| $page | $(mib $steady) | $(mib $peak) | $(mib $after1) | $(mib $after3) |"
done
