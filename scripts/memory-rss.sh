#!/usr/bin/env bash
# Peak and settled RSS of the release sidecar binary over the hostile pages of issue 16, from
# /proc/<pid>/status (VmRSS, VmHWM), scraping scripts/memory-target.py on loopback and remote-
# writing into a real Prometheus (/usr/bin/prometheus with --web.enable-remote-write-receiver).
# Everything listens on 127.0.0.1.
#
#   scripts/memory-rss.sh path/to/wxcloudrun-sidecar [extra sidecar flags...]
#   PAGES="10k 1m" INTERVAL=2s TIMEOUT=1500ms scripts/memory-rss.sh ...   # a subset, other timing
#   KEEP_LOGS=dir scripts/memory-rss.sh ...   # keep the logs, and each sidecar's smaps at the end
#
# Per page, a fresh sidecar (counting scrapes on its admin /metrics):
#   steady    VmRSS after 3 scrapes of the small page;
#   peak      VmHWM after 3 scrapes of the hostile page (the scrape that was in flight when the
#             page was switched is not counted among the 3);
#   outcomes  how those 3 scrapes went (wxcloudrun_sidecar_scrapes_total by outcome) and the
#             limits that refused them (wxcloudrun_sidecar_scrapes_exceeded_limit_total; an old
#             binary without it shows "-");
#   after 1/3 VmRSS 0.5 s after the 2nd / 4th scrape counted once the page went back to small
#             (the 1st may have been in flight with the hostile page);
#   first good seconds from switching back to the small page until Prometheus answers a query for
#             the small page's new sample (small{phase="after-PAGE"}), polled every 0.2 s. It
#             includes the wait for the next scrape (up to one interval).
set -euo pipefail
BIN=$(realpath "$1"); shift
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
PROM_PORT=${PROM_PORT:-19390}; TARGET_PORT=${TARGET_PORT:-19391}; ADMIN_PORT=${ADMIN_PORT:-19392}
INTERVAL=${INTERVAL:-2s}; TIMEOUT=${TIMEOUT:-1500ms}
PAGES=${PAGES:-10k 100k names long 1m endless trickle}
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "small start" > "$WORK/kind"
python3 "$HERE/memory-target.py" "$TARGET_PORT" "$WORK/kind" 2> "$WORK/target.log" &
PIDS+=($!)
printf 'global:\n  scrape_interval: 1m\n' > "$WORK/prometheus.yml"
/usr/bin/prometheus --config.file "$WORK/prometheus.yml" --storage.tsdb.path "$WORK/data" \
  --web.listen-address "127.0.0.1:$PROM_PORT" --web.enable-remote-write-receiver \
  > "$WORK/prometheus.log" 2>&1 &
PIDS+=($!)

# Bounded waits: $1 tries of 0.2 s for the command in the rest.
wait_for() {
  local tries=$1; shift
  for _ in $(seq "$tries"); do "$@" > /dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}
wait_for 150 curl -sf "http://127.0.0.1:$PROM_PORT/-/ready" || { echo "prometheus not ready" >&2; exit 1; }
wait_for 150 curl -sf "http://127.0.0.1:$TARGET_PORT/metrics" || { echo "target not ready" >&2; exit 1; }

kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
mib() { awk -v v="$1" 'BEGIN { printf "%.1f", v / 1024 }'; }
now() { date +%s.%N; }
admin() { curl -sf --max-time 2 "http://127.0.0.1:$ADMIN_PORT/metrics" || true; }
# Scrapes counted so far (every outcome).
scrapes() {
  admin | awk '/^wxcloudrun_sidecar_scrapes_total\{/ { n += $2 } END { printf "%d", n }'
}
# "outcome=count ..." of a metric family's nonzero series, by its one label.
by_label() {
  awk -v fam="$2" '$1 ~ "^"fam"\\{" && $2 > 0 {
      split($1, a, "\""); printf "%s=%d\n", a[2], $2 }' "$1" | sort
}
# What changed between two snapshots of by_label: "label+n" each.
delta() {
  join -t= -a2 -e0 -o 2.1,1.2,2.2 "$1" "$2" |
    awk -F= '$3 - $2 > 0 { printf "%s%s×%d", sep, $1, $3 - $2; sep = " " }'
}
wait_scrapes() { # until at least $1 scrapes are counted, at most $2 seconds
  local deadline
  deadline=$(awk -v n="$(now)" -v s="$2" 'BEGIN { printf "%.1f", n + s }')
  while [ "$(scrapes)" -lt "$1" ]; do
    if awk -v n="$(now)" -v d="$deadline" 'BEGIN { exit !(n > d) }'; then return 1; fi
    sleep 0.1
  done
}

page_bytes() { awk -v p="$1" '$1 == p":" { print $2 }' "$WORK/target.log"; }
echo "binary: $BIN $*"
echo "interval $INTERVAL, scrape timeout $TIMEOUT; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| page | text MB | steady RSS MiB | peak RSS (VmHWM) MiB | 3 hostile scrapes | refused by | RSS 1 scrape after MiB | RSS 3 scrapes after MiB | first good sample after s |"
echo "|---|---|---|---|---|---|---|---|---|"
for page in $PAGES; do
  echo "small steady-$page" > "$WORK/kind"
  "$BIN" --scrape-url "http://127.0.0.1:$TARGET_PORT/metrics" \
    --remote-write-url "http://127.0.0.1:$PROM_PORT/api/v1/write" \
    --scrape-interval "$INTERVAL" --scrape-timeout "$TIMEOUT" --admin-addr "127.0.0.1:$ADMIN_PORT" "$@" \
    > "$WORK/sidecar-$page.log" 2>&1 &
  pid=$!; PIDS+=($pid)
  wait_scrapes 3 60 || echo "($page: steady scrapes slow)" >&2
  steady=$(kib $pid VmRSS)

  c0=$(scrapes)
  echo "$page" > "$WORK/kind"
  wait_scrapes $((c0 + 1)) 60 || true
  admin > "$WORK/m0"
  c1=$(scrapes)
  wait_scrapes $((c1 + 3)) 120 || echo "($page: hostile scrapes slow)" >&2
  admin > "$WORK/m1"
  peak=$(kib $pid VmHWM)
  by_label "$WORK/m0" wxcloudrun_sidecar_scrapes_total > "$WORK/o0"
  by_label "$WORK/m1" wxcloudrun_sidecar_scrapes_total > "$WORK/o1"
  outcomes=$(delta "$WORK/o0" "$WORK/o1")
  if grep -q '^wxcloudrun_sidecar_scrapes_exceeded_limit_total' "$WORK/m1"; then
    by_label "$WORK/m0" wxcloudrun_sidecar_scrapes_exceeded_limit_total > "$WORK/l0"
    by_label "$WORK/m1" wxcloudrun_sidecar_scrapes_exceeded_limit_total > "$WORK/l1"
    limits=$(delta "$WORK/l0" "$WORK/l1"); limits=${limits:-none}
  else
    limits="-"
  fi

  c2=$(scrapes)
  echo "small after-$page" > "$WORK/kind"
  t0=$(now)
  (
    query="http://127.0.0.1:$PROM_PORT/api/v1/query?query=small%7Bphase%3D%22after-$page%22%7D"
    for _ in $(seq 600); do # 120 s at most
      if curl -sf --max-time 1 "$query" | grep -q '"value"'; then
        awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }' > "$WORK/first-$page"
        exit 0
      fi
      sleep 0.2
    done
    echo ">120" > "$WORK/first-$page"
  ) &
  poller=$!
  wait_scrapes $((c2 + 2)) 120 || true
  sleep 0.5; after1=$(kib $pid VmRSS)
  wait_scrapes $((c2 + 4)) 120 || true
  sleep 0.5; after3=$(kib $pid VmRSS)
  if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp "/proc/$pid/smaps" "$KEEP_LOGS/smaps-$page"; fi
  wait $poller || true
  kill -KILL $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  case $page in
    endless) text="endless" ;;
    trickle) text="1 B/s" ;;
    *) text=$(awk -v b="$(page_bytes "$page")" 'BEGIN { printf "%.1f", b / 1e6 }') ;;
  esac
  echo "| $page | $text | $(mib "$steady") | $(mib "$peak") | ${outcomes:-?} | $limits | $(mib "$after1") | $(mib "$after3") | $(cat "$WORK/first-$page") |"
done
if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp "$WORK"/*.log "$KEEP_LOGS"/; fi
