#!/usr/bin/env bash
# Instructions per request of each variant of the layer (crates/wxcloudrun-telemetry/benches/
# callgrind.rs), counted by callgrind: load-independent, so it can be compared across runs on a
# shared machine. Usage: [BIN=<bench binary>] scripts/callgrind-layer.sh [variant…]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-$(cargo bench -p wxcloudrun-telemetry --bench callgrind --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*callgrind[^"]*\)".*/\1/p' | tail -1)}
small=${SMALL:-1000}
large=${LARGE:-6000}
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(bare wx_metrics wx_metrics_subscriber wx_traces_sampled_out wx_traces_always_on
    wx_traces_always_on_otlp_encoded wx_traces_always_on_direct_encoded)
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
for variant in "${variants[@]}"; do
    a=$(count "$variant" "$small")
    b=$(count "$variant" "$large")
    echo "$variant $(( (b - a) / (large - small) )) instructions/request"
done
