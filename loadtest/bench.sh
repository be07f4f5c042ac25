#!/usr/bin/env bash
# Side-by-side benchmark of zonegate against nginx and haproxy (mTLS-only reverse proxies) and
# the upstream alone, on one box, loopback only. Run from the repository root:
#
#   loadtest/bench.sh [options]
#
# options:
#   -d SEC    measured seconds per run                                          [5]
#   -r N      repetitions of the oha throughput runs (medians are reported)     [1]
#   -c N      connections of the throughput runs                                [64]
#   -s LIST   sections, comma-separated: oha,latency,handshake,mix,idle,cpu,callgrind
#             [oha,latency,handshake,mix]
#   -o DIR    results directory                          [target/bench/<date-time>]
#   -B        do not build; use target/release/{zonegate,zonegate-loadtest} as they are
#   -h        this help
# env: PROXY_CPU=0 LOAD_CPU=1 BACKEND_CPU=1 WARMUP=2 RATE=1000 RATE_CONNS=16 HS_CONNS=16
#      BENCH_DIR=../shared/bench (the baseline harness)
#      PROXY_PORT=28443 BACKEND_PORT=28080 BACKEND_TLS_PORT=28444 (not the harness's defaults,
#      which other checkouts' demos and tests on a shared box tend to use)
#      IDLE_CONNS=10000 IDLE_HOLD=40 (idle section; the hold includes opening them)
#      KEEP_WORK=1 keeps the temporary work directory (PKI, configs, logs)
#
# Sections (server under test pinned to PROXY_CPU, load generator and upstream to LOAD_CPU;
# every server is started fresh for each run and stopped by PID):
#   oha        throughput, HTTP/1.1 keep-alive and HTTP/2 over mTLS, measured with oha by the
#              baseline harness ../shared/bench/run.sh: direct-http (the upstream alone),
#              nginx, haproxy, zonegate-full, zonegate-allowall
#   latency    zonegate-loadtest, open loop at RATE req/s over RATE_CONNS connections, latency
#              from the intended send time: direct-http, direct-tls, nginx, zonegate-full,
#              zonegate-allowall; and zonegate-full over 100 connections (memory)
#   handshake  zonegate-loadtest, a new connection and a full mTLS handshake per request:
#              nginx, haproxy, zonegate-full; then zonegate-full with TLS resumption
#   mix        zonegate-full, keep-alive, checkout and cart SVIDs 3:1, requests allowed and
#              denied 9:1 (cart has no rule: default deny)
#   idle       (not in the default set: ~2 min) zonegate-loadtest --hold: IDLE_CONNS mTLS
#              connections opened, held idle IDLE_HOLD s, then checked: nginx, zonegate-full;
#              the server's RSS before and while holding gives the memory per idle connection
#   cpu        (not in the default set; ~2 min, strace for the syscall counts) where a server's
#              time goes: zonegate-loadtest, closed loop, keep-alive, -c connections, HTTP/1.1
#              and HTTP/2: nginx, haproxy, zonegate-full; the server's user and system CPU
#              time per request (from /proc, over a run of -d s after a warm-up run; the run's
#              own connection handshakes included), then a second run under `strace -f -c`
#              for its system calls per request (strace slows the server; the counts hold)
#   callgrind  (not in the default set; needs valgrind) instructions per request, the figure
#              that does not move with the box's noise: zonegate-full and zonegate-allowall
#              under callgrind, in steady keep-alive traffic: two runs over 16 new connections,
#              one of CG_WARM (2000) requests, one of CG_WARM + CG_REQUESTS (4000): the difference
#              cancels the handshakes and set-up out (reported apart, per connection); the
#              functions with the most instructions of their own go to DIR/callgrind-*.txt;
#              zonegate-full once more over HTTP/2 (one stream per connection); also
#              zonegate-contain (the full path with a never-reached per-identity limit
#              and OpenTelemetry tracing sampled at 1% to an OTLP sink on the load CPU)
# zonegate-full = mTLS, SVID checks, policy, identity events to a file;
# zonegate-allowall = the same listener with one allow-everything rule and events off.
# Then every figure and the ratios the performance targets are stated in are printed, and
# written to DIR/summary.txt.
#
# Needs nginx, haproxy, oha, curl, python3, openssl, taskset: ../shared/bench/setup.sh
# installs them (apt and cargo install).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() { sed -n '2,50p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

DURATION=5 REPEAT=1 CONNS=64 SECTIONS="oha,latency,handshake,mix" OUTDIR="" BUILD=1
IDLE_CONNS="${IDLE_CONNS:-10000}" IDLE_HOLD="${IDLE_HOLD:-40}"
while getopts "d:r:c:s:o:Bh" o; do
  case $o in
    d) DURATION=$OPTARG ;; r) REPEAT=$OPTARG ;; c) CONNS=$OPTARG ;; s) SECTIONS=$OPTARG ;;
    o) OUTDIR=$OPTARG ;; B) BUILD=0 ;; h) usage 0 ;; *) usage 1 ;;
  esac
done
shift $((OPTIND - 1))
(($# == 0)) || usage 1
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 && "$DURATION" -le 120 ]] || { echo "-d must be 1..120 s" >&2; exit 1; }
[[ "$REPEAT" =~ ^[0-9]+$ && "$REPEAT" -ge 1 && "$REPEAT" -le 20 ]] || { echo "-r must be 1..20" >&2; exit 1; }
[[ "$CONNS" =~ ^[0-9]+$ && "$CONNS" -ge 1 && "$CONNS" -le 10000 ]] || { echo "-c must be 1..10000" >&2; exit 1; }
has_section() { [[ ",$SECTIONS," == *",$1,"* ]]; }

export PROXY_PORT="${PROXY_PORT:-28443}" BACKEND_PORT="${BACKEND_PORT:-28080}"
export BACKEND_TLS_PORT="${BACKEND_TLS_PORT:-28444}"
OTLP_PORT="${OTLP_PORT:-28431}"
WARMUP="${WARMUP:-2}"
RATE="${RATE:-1000}"
RATE_CONNS="${RATE_CONNS:-16}"
HS_CONNS="${HS_CONNS:-16}"
BENCH_DIR="$(cd "${BENCH_DIR:-$ROOT/../shared/bench}" 2>/dev/null && pwd)" || {
  echo "the baseline harness is not at ${BENCH_DIR:-$ROOT/../shared/bench} (set BENCH_DIR)" >&2; exit 1; }
[[ -x "$BENCH_DIR/run.sh" && -f "$BENCH_DIR/lib/common.sh" ]] || {
  echo "$BENCH_DIR does not look like the baseline harness (run.sh, lib/common.sh)" >&2; exit 1; }

# --- prerequisites: say what is missing and how to get it ------------------------------------
missing=()
for b in nginx haproxy curl python3 openssl taskset; do command -v "$b" >/dev/null || missing+=("$b"); done
OHA="${OHA:-oha}"
[[ -x "$OHA" ]] || OHA="$(command -v "$OHA" || echo "$HOME/.cargo/bin/oha")"
if has_section oha && [[ ! -x "$OHA" ]]; then missing+=(oha); fi
if has_section idle && ! command -v ss >/dev/null; then missing+=("ss (iproute2)"); fi
if ((${#missing[@]})); then
  echo "missing: ${missing[*]}" >&2
  echo "install them with the baseline harness's setup: $BENCH_DIR/setup.sh" >&2
  echo "(apt: nginx haproxy curl python3 ...; cargo install oha; it also makes the bench PKI)" >&2
  exit 1
fi
(($(nproc) >= 2)) || { echo "needs 2 CPUs (server and load generator pinned apart)" >&2; exit 1; }

# --- work directory, build ---------------------------------------------------------------------
ZWORK="$(mktemp -d "${TMPDIR:-/tmp}/zonegate-bench.XXXXXX")"
# The harness is read-only shared material: its generated files (PKI, rendered configs, raw
# results) go to our work directory, never into it.
export BENCH_WORK="$ZWORK/harness"
OUTDIR="${OUTDIR:-$ROOT/target/bench/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUTDIR" "$BENCH_WORK"
OUTDIR="$(cd "$OUTDIR" && pwd)"
# shellcheck source=/dev/null
source "$BENCH_DIR/lib/common.sh"   # start_backend, start_proxy, stop_pid, wait_port, ...

OTLP_PID=""
cleanup() {
  cleanup_all
  [[ -n "$OTLP_PID" ]] && kill "$OTLP_PID" 2>/dev/null

  if [[ "${KEEP_WORK:-0}" == 1 ]]; then log "work directory kept: $ZWORK"; else rm -rf "$ZWORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ZG="$ROOT/target/release/zonegate"
LT="$ROOT/target/release/zonegate-loadtest"
if ((BUILD)); then
  log "building zonegate and zonegate-loadtest (release)"
  (cd "$ROOT" && cargo build --release --locked -p zonegate -p zonegate-loadtest) >&2
fi
[[ -x "$ZG" && -x "$LT" ]] || die "no release binaries in $ROOT/target/release (drop -B to build)"

"$BENCH_DIR/pki/gen.sh" "$PKI" >/dev/null
HZ=$(getconf CLK_TCK)

# --- zonegate configurations -------------------------------------------------------------------
ZCONF="$ZWORK/zonegate"
mkdir -p "$ZCONF/policy-full" "$ZCONF/policy-allowall"
gateway_toml() { # policy-dir events-sink-lines
  cat <<EOF
zone = "payments"
workers = 1

[[listener]]
address = "127.0.0.1:$PROXY_PORT"
http2 = true

[tls]
cert = "$PKI/server.crt"
key = "$PKI/server.key"

[trust_domain."example.org"]
bundle = "$PKI/ca.crt"

[[zone_map]]
zone = "shop"
identities = ["spiffe://example.org/ns/shop/*"]

[[zone_map]]
zone = "payments"
identities = ["spiffe://example.org/ns/payments/*"]

[[route]]
name = "payments-api"
path_prefix = "/payments"
upstream = "backend"

[upstream.backend]
addresses = ["127.0.0.1:$BACKEND_PORT"]
connect_timeout_ms = 1000
read_timeout_ms = 10000

[policy]
files = ["$1"]

[events]
$2

[shutdown]
grace_period_s = 0
drain_timeout_s = 1
upgrade_sock = "$ZCONF/upgrade.sock"
EOF
}
gateway_toml policy-full "sink = \"file\"
path = \"$ZWORK/events.jsonl\"
capacity = 65536" >"$ZCONF/full.toml"
gateway_toml policy-allowall 'sink = "off"' >"$ZCONF/allowall.toml"
cat >"$ZCONF/policy-full/10-shop.toml" <<'EOF'
# The shop zone in payments: checkout charges and refunds; cart has no rule (default deny).
[[rule]]
id = "checkout-charges"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/checkout"]
routes = ["payments-api"]
methods = ["GET", "POST"]
paths = ["/payments/charge", "/payments/charges/**"]

[[rule]]
id = "checkout-refunds"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/checkout"]
routes = ["payments-api"]
methods = ["POST"]
paths = ["/payments/refund"]

[[rule]]
id = "shop-no-refunds"
effect = "deny"
mode = "audit"
zones = ["shop"]
paths = ["/payments/charges/*/refund"]
EOF
cat >"$ZCONF/policy-full/20-internal.toml" <<'EOF'
[[rule]]
id = "payments-read"
effect = "allow"
zones = ["payments"]
routes = ["payments-api"]
methods = ["GET"]
paths = ["/payments/**"]

[[rule]]
id = "no-admin"
effect = "deny"
paths = ["/payments/admin", "/payments/admin/**"]
EOF
# zonegate-contain: the full path with a per-identity limit on the rule every bench request
# meets, set so high that it never refuses, and tracing sampled at 1%, exported to an OTLP/HTTP
# sink on the load CPU: what containment and observability cost (callgrind section).
mkdir -p "$ZCONF/policy-contain"
cp "$ZCONF/policy-full/"*.toml "$ZCONF/policy-contain/"
sed -i 's/^id = "checkout-charges"$/id = "checkout-charges"\nlimit = { rate = "1000000\/s", burst = 1000000, in_flight = 100000 }/' \
  "$ZCONF/policy-contain/10-shop.toml"
grep -q '^limit = ' "$ZCONF/policy-contain/10-shop.toml" || die "could not add the bench's limit"
gateway_toml policy-contain "sink = \"file\"
path = \"$ZWORK/events.jsonl\"
capacity = 65536

[tracing]
endpoint = \"http://127.0.0.1:$OTLP_PORT\"
sample = 0.01" >"$ZCONF/contain.toml"
# The OTLP sink: takes every export (POST /v1/traces) and answers with an empty
# ExportTraceServiceResponse, counting the bytes it got.
taskset -c "$LOAD_CPU" python3 -c '
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        got = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.server.exports += 1
        self.server.bytes += len(got)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
        with open(sys.argv[2], "w") as f:
            f.write(f"{self.server.exports} exports, {self.server.bytes} bytes\n")
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Sink)
server.exports = server.bytes = 0
server.serve_forever()
' "$OTLP_PORT" "$ZWORK/otlp-sink.txt" &
OTLP_PID=$!
cat >"$ZCONF/policy-allowall/all.toml" <<'EOF'
[[rule]]
id = "allow-all"
effect = "allow"
EOF
for c in full allowall contain; do
  "$ZG" check --config "$ZCONF/$c.toml" >"$ZWORK/check-$c.log" 2>&1 ||
    { cat "$ZWORK/check-$c.log" >&2; die "generated zonegate config $c refused"; }
done
zg_cmd() { echo "env RUST_LOG=warn $ZG run --config $ZCONF/$1.toml"; }

# --- our own measurements (zonegate-loadtest) --------------------------------------------------
ticks_of() { # summed utime+stime of a process tree
  local s=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || continue
    s=$((s + v))
  done
  echo "$s"
}
hwm_kb_of() { # summed peak RSS (VmHWM) of a process tree
  local s=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk '/^VmHWM:/{print $2}' "/proc/$p/status" 2>/dev/null) || continue
    s=$((s + ${v:-0}))
  done
  echo "$s"
}

# lt_run LABEL TARGET [loadtest args...]: start the target's servers, run zonegate-loadtest
# pinned to LOAD_CPU, stop the servers; the report goes to OUTDIR/lt-LABEL.json with the
# server's CPU share and peak RSS added.
lt_run() {
  local label=$1 target=$2; shift 2
  local url spid t0 t1 rss out="$OUTDIR/lt-$label.json"
  case $target in
    direct-http) url="http://127.0.0.1:$BACKEND_PORT" ;;
    direct-tls) url="https://localhost:$BACKEND_TLS_PORT" ;;
    *) url="https://localhost:$PROXY_PORT" ;;
  esac
  local tls=()
  [[ "$url" == https:* ]] && tls=(--ca "$PKI/ca.crt")
  start_backend "$(backend_cpu_for "$target")"
  case $target in
    zonegate-*) CUSTOM_CMD="$(zg_cmd "${target#zonegate-}")" start_proxy custom ;;
    *) start_proxy "$target" ;;
  esac
  spid=$(server_pid "$target")
  t0=$(ticks_of "$spid")
  if ! taskset -c "$LOAD_CPU" timeout -k 5 $((DURATION + WARMUP + 60)) "$LT" "$url" "${tls[@]}" \
      --warmup "${WARMUP}s" -d "${DURATION}s" --json --quiet "$@" >"$out.tmp" 2>"$ZWORK/lt.err"; then
    log "zonegate-loadtest $label: $(tail -c 400 "$ZWORK/lt.err")"
  fi
  t1=$(ticks_of "$spid")
  rss=$(hwm_kb_of "$spid")
  local events=0
  [[ "$target" == zonegate-full && -f "$ZWORK/events.jsonl" ]] && events=$(wc -l <"$ZWORK/events.jsonl")
  stop_proxy
  stop_backend
  rm -f "$ZWORK/events.jsonl"
  python3 - "$out.tmp" "$out" "$label" "$target" "$((t1 - t0))" "$HZ" "$((DURATION + WARMUP))" "$rss" "$events" <<'PY'
import json, sys
src, dst, label, target, ticks, hz, secs, rss, events = sys.argv[1:]
try:
    r = json.load(open(src))
except (OSError, ValueError):
    r = {}
# CPU over warm-up + measurement: the server was busy for both.
r["bench"] = {"label": label, "server": target,
              "server_cpu_pct": round(100.0 * int(ticks) / int(hz) / float(secs), 1),
              "server_peak_rss_mib": round(int(rss) / 1024, 1), "events_written": int(events)}
json.dump(r, open(dst, "w"), indent=1)
PY
  rm -f "$out.tmp"
  python3 - "$out" <<'PY' >&2
import json, sys
r = json.load(open(sys.argv[1])); b = r["bench"]; l = r.get("latency_us") or {}
print(f"  {b['label']:<28} {r.get('rps', 0):>9.0f} req/s  p50 {l.get('p50', 0):>8.1f} us  "
      f"p99 {l.get('p99', 0):>8.1f} us  srv-cpu {b['server_cpu_pct']:>5.1f}%  "
      f"rss {b['server_peak_rss_mib']:>5.1f} MiB  status {r.get('status', {})}  "
      f"errors {r.get('error_kinds', {})}  tls {r.get('tls_handshakes', {})}")
PY
}

rss_kb_of() { # summed current RSS (VmRSS) of a process tree
  local s=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null) || continue
    s=$((s + ${v:-0}))
  done
  echo "$s"
}
established() { ss -Htn state established "( sport = :$PROXY_PORT )" 2>/dev/null | wc -l; }

# idle_run TARGET: hold IDLE_CONNS idle mTLS connections to TARGET; memory per connection from
# the server's RSS before and while holding them.
idle_run() {
  local target=$1 out="$OUTDIR/lt-idle-$1.json" spid rss0 rss1 n=0 lt_pid
  start_backend "$(backend_cpu_for "$target")"
  case $target in
    zonegate-*) CUSTOM_CMD="$(zg_cmd "${target#zonegate-}")" start_proxy custom ;;
    *) start_proxy "$target" ;;
  esac
  spid=$(server_pid "$target")
  # One proxied request first, so what is set up lazily (upstream pool...) is in the baseline.
  taskset -c "$LOAD_CPU" "$LT" "https://localhost:$PROXY_PORT" --ca "$PKI/ca.crt" \
    --identity "$ID_CHECKOUT" "${REQ[@]}" -n 1 -c 1 --quiet >/dev/null 2>&1 || true
  sleep 1
  rss0=$(rss_kb_of "$spid")
  taskset -c "$LOAD_CPU" timeout -k 5 $((IDLE_HOLD + 60)) "$LT" "https://localhost:$PROXY_PORT" \
    --ca "$PKI/ca.crt" --identity "$ID_CHECKOUT" "${REQ[@]}" --hold -c "$IDLE_CONNS" \
    -d "${IDLE_HOLD}s" --timeout 20s --json --quiet >"$out.tmp" 2>"$ZWORK/lt.err" &
  lt_pid=$!
  # While the tool runs: the most connections seen established, and the RSS at that moment.
  local now
  rss1=$rss0
  while kill -0 "$lt_pid" 2>/dev/null; do
    now=$(established)
    if ((now > n)); then n=$now; rss1=$(rss_kb_of "$spid"); fi
    sleep 0.5
  done
  wait "$lt_pid" || log "zonegate-loadtest idle-$target: $(tail -c 400 "$ZWORK/lt.err")"
  stop_proxy
  stop_backend
  python3 - "$out.tmp" "$out" "$target" "$n" "$rss0" "$rss1" <<'PY'
import json, sys
src, dst, target, n, rss0, rss1 = sys.argv[1:]
try:
    r = json.load(open(src))
except (OSError, ValueError):
    r = {}
n, rss0, rss1 = int(n), int(rss0), int(rss1)
r["bench"] = {"label": f"idle-{target}", "server": target, "established_max": n,
              "server_rss_before_mib": round(rss0 / 1024, 1),
              "server_rss_held_mib": round(rss1 / 1024, 1),
              "server_peak_rss_mib": round(rss1 / 1024, 1),
              "kib_per_connection": round((rss1 - rss0) / n, 1) if n else None}
json.dump(r, open(dst, "w"), indent=1)
b = r["bench"]
print(f"  idle-{target:<23} held {r.get('held')} of {r.get('connections')}; at most {n} established "
      f"at once; RSS {b['server_rss_before_mib']} -> {b['server_rss_held_mib']} MiB = "
      f"{b['kib_per_connection']} KiB per connection; errors {r.get('error_kinds', {})}",
      file=sys.stderr)
PY
  rm -f "$out.tmp"
}

# A run that fails (a port taken, a server that does not start) is reported and skipped; the
# subshell stops what it started, as the harness's `die` exits.
try() { ( trap cleanup_all EXIT; "$@" ) || log "run failed, skipped: $*"; }

ID_CHECKOUT="$PKI/checkout.crt,$PKI/checkout.key"
ID_CART="$PKI/cart.crt,$PKI/cart.key"
REQ=(--request "GET /payments/charge")

log "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg)"
log "runs of ${DURATION}s (+${WARMUP}s warm-up); server on CPU $PROXY_CPU, load and upstream on CPU $LOAD_CPU; results in $OUTDIR"

if has_section oha; then
  log "== oha via $BENCH_DIR/run.sh: throughput, h1 and h2, $CONNS connections =="
  CUSTOM_NAME=zonegate-full CUSTOM_CMD="$(zg_cmd full)" \
    "$BENCH_DIR/run.sh" -r "$REPEAT" -d "$DURATION" -c "$CONNS" -m h1,h2 \
    -o "$OUTDIR/oha-main.tsv" direct-http nginx haproxy custom >"$OUTDIR/oha-main.md"
  CUSTOM_NAME=zonegate-allowall CUSTOM_CMD="$(zg_cmd allowall)" \
    "$BENCH_DIR/run.sh" -r "$REPEAT" -d "$DURATION" -c "$CONNS" -m h1,h2 \
    -o "$OUTDIR/oha-allowall.tsv" custom >"$OUTDIR/oha-allowall.md"
  CUSTOM_NAME=zonegate-contain CUSTOM_CMD="$(zg_cmd contain)" \
    "$BENCH_DIR/run.sh" -r "$REPEAT" -d "$DURATION" -c "$CONNS" -m h1,h2 \
    -o "$OUTDIR/oha-contain.tsv" custom >"$OUTDIR/oha-contain.md"
fi

if has_section latency; then
  log "== zonegate-loadtest: latency at $RATE req/s over $RATE_CONNS connections (open loop) =="
  try lt_run latency-direct-http direct-http "${REQ[@]}" --rate "$RATE" -c "$RATE_CONNS"
  for t in direct-tls nginx zonegate-full zonegate-allowall; do
    try lt_run "latency-$t" "$t" --identity "$ID_CHECKOUT" "${REQ[@]}" --rate "$RATE" -c "$RATE_CONNS"
  done
  try lt_run latency-zonegate-full-100c zonegate-full --identity "$ID_CHECKOUT" "${REQ[@]}" \
    --rate "$RATE" -c 100
fi

if has_section handshake; then
  log "== zonegate-loadtest: new connection + mTLS handshake per request, $HS_CONNS at a time =="
  for t in nginx haproxy zonegate-full; do
    try lt_run "handshake-$t" "$t" --identity "$ID_CHECKOUT" "${REQ[@]}" --new-conn -c "$HS_CONNS"
  done
  try lt_run handshake-resumed-zonegate-full zonegate-full --identity "$ID_CHECKOUT" "${REQ[@]}" \
    --new-conn --resume -c "$HS_CONNS"
fi

if has_section mix; then
  log "== zonegate-loadtest: identity and request mix, keep-alive, 16 connections =="
  try lt_run mix-zonegate-full zonegate-full \
    --identity "$ID_CHECKOUT,weight=3" --identity "$ID_CART,weight=1" \
    --request "GET /payments/charge weight=9" --request "POST /payments/refund weight=1" -c 16
fi

if has_section idle; then
  log "== zonegate-loadtest --hold: $IDLE_CONNS idle mTLS connections for ${IDLE_HOLD}s =="
  for t in nginx zonegate-full; do try idle_run "$t"; done
fi

cpu_ticks_of() { # "user system" clock ticks, summed over a process tree
  local u=0 y=0 p a b
  for p in $(tree_pids "$1"); do
    read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null) || continue
    u=$((u + a)); y=$((y + b))
  done
  echo "$u $y"
}

# cpu_run TARGET MODE: user and system CPU time per request of TARGET's server (MODE h1|h2),
# closed loop over CONNS keep-alive connections; then its system calls per request, under
# strace. Report: OUTDIR/cpu-TARGET-MODE.json.
cpu_run() {
  local target=$1 mode=$2 spid c0 c1 out="$OUTDIR/cpu-$1-$2.json" pids p
  local load=(taskset -c "$LOAD_CPU" timeout -k 5 $((DURATION + 60)) "$LT" "https://localhost:$PROXY_PORT"
    --ca "$PKI/ca.crt" --identity "$ID_CHECKOUT" "${REQ[@]}" -c "$CONNS" --warmup 0s --json --quiet)
  [[ "$mode" == h2 ]] && load+=(--h2 --streams 1)
  start_backend "$(backend_cpu_for "$target")"
  case $target in
    zonegate-*) CUSTOM_CMD="$(zg_cmd "${target#zonegate-}")" start_proxy custom ;;
    *) start_proxy "$target" ;;
  esac
  spid=$(server_pid "$target")
  "${load[@]}" -d "${WARMUP}s" >/dev/null 2>"$ZWORK/lt.err" || log "warm-up: $(tail -c 300 "$ZWORK/lt.err")"
  c0=$(cpu_ticks_of "$spid")
  "${load[@]}" -d "${DURATION}s" >"$ZWORK/cpu-run.json" 2>"$ZWORK/lt.err" || log "cpu-$target-$mode: $(tail -c 300 "$ZWORK/lt.err")"
  c1=$(cpu_ticks_of "$spid")
  rm -f "$ZWORK"/strace.*
  pids=()
  if command -v strace >/dev/null; then
    for p in $(tree_pids "$spid"); do
      strace -f -c -qq -o "$ZWORK/strace.$p" -p "$p" 2>/dev/null & pids+=($!)
    done
    sleep 1 # attached
    "${load[@]}" -d "${DURATION}s" >"$ZWORK/cpu-strace.json" 2>"$ZWORK/lt.err" || log "strace run: $(tail -c 300 "$ZWORK/lt.err")"
    for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  fi
  stop_proxy
  stop_backend
  python3 - "$ZWORK" "$out" "$target" "$mode" "$c0" "$c1" "$HZ" <<'PY'
import glob, json, sys
work, dst, target, mode, c0, c1, hz = sys.argv[1:]
(u0, s0), (u1, s1), hz = map(int, c0.split()), map(int, c1.split()), int(hz)
def load(p):
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return {}
run, traced = load(f"{work}/cpu-run.json"), load(f"{work}/cpu-strace.json")
n = run.get("responses") or 0
calls = {}
for p in glob.glob(f"{work}/strace.*"):
    for line in open(p):
        f = line.split()
        # % time, seconds, usecs/call, calls, [errors,] syscall; the total line has no name
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            calls[f[-1]] = calls.get(f[-1], 0) + int(f[3])
tn = traced.get("responses") or 0
r = {"target": target, "mode": mode, "rps": run.get("rps"), "responses": n,
     "status": run.get("status"), "errors": run.get("error_kinds"),
     "user_us_per_req": round((u1 - u0) / hz * 1e6 / n, 1) if n else None,
     "sys_us_per_req": round((s1 - s0) / hz * 1e6 / n, 1) if n else None,
     "syscalls_per_req": {k: round(v / tn, 2) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])
                          if v / max(tn, 1) >= 0.01} if tn else None}
json.dump(r, open(dst, "w"), indent=1)
top = ", ".join(f"{k} {v}" for k, v in list((r["syscalls_per_req"] or {}).items())[:6])
print(f"  cpu-{target}-{mode:<3} {r['rps'] or 0:>8.0f} req/s  user {r['user_us_per_req']} us  "
      f"system {r['sys_us_per_req']} us per request; syscalls per request: {top or 'n/a'}",
      file=sys.stderr)
PY
}

# cg_run TARGET [h2]: instructions per request of zonegate TARGET (full|allowall|contain) under
# callgrind, over HTTP/1.1 or (h2) HTTP/2 with one stream per connection. Two measured runs of
# 16 fresh connections, of CG_WARM (2000) requests and of CG_WARM + CG_REQUESTS (4000): their
# difference is CG_REQUESTS requests of steady keep-alive traffic, handshakes and connection
# set-up cancelled out, as in the throughput runs (thousands of requests per connection).
cg_run() {
  local target=$1 mode=${2:-h1} n=${CG_REQUESTS:-4000} warm=${CG_WARM:-2000} vpid label=$1
  local common=("https://localhost:$PROXY_PORT" --ca "$PKI/ca.crt" --identity "$ID_CHECKOUT"
    "${REQ[@]}" -c 16 --quiet)
  if [[ "$mode" == h2 ]]; then common+=(--h2 --streams 1); label="$target-h2"; fi
  start_backend "$LOAD_CPU"
  (cd "$ZWORK" && RUST_LOG=warn exec valgrind --tool=callgrind --compress-strings=no \
    --compress-pos=no --callgrind-out-file="$ZWORK/callgrind.out.%p" \
    "$ZG" run --config "$ZCONF/$target.toml" >"$ZWORK/callgrind-$label.log" 2>&1) &
  vpid=$!
  wait_port "$PROXY_PORT" 120 || { kill "$vpid"; die "zonegate under callgrind did not listen"; }
  "$LT" "${common[@]}" -n 500 >/dev/null
  callgrind_control -z "$vpid" >/dev/null
  "$LT" "${common[@]}" -n "$warm" >/dev/null
  callgrind_control -d "$vpid" >/dev/null # part 1
  callgrind_control -z "$vpid" >/dev/null
  "$LT" "${common[@]}" -n $((warm + n)) --json >"$OUTDIR/callgrind-$label.json"
  callgrind_control -d "$vpid" >/dev/null # part 2
  kill -INT "$vpid" 2>/dev/null || true
  wait "$vpid" 2>/dev/null || true
  stop_backend
  python3 - "$ZWORK/callgrind.out.$vpid.1" "$ZWORK/callgrind.out.$vpid.2" "$warm" "$n" "$label" <<'PY' | tee "$OUTDIR/callgrind-$label.txt" >&2
import collections, sys
short, long, warm, n, target = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def own(path):
    cost = collections.Counter()
    fn, call = None, False
    for line in open(path, errors="replace"):
        if line.startswith("fn="):
            fn = line[3:].strip()
        elif line.startswith("calls="):
            call = True
        elif line[:1].isdigit() or line[:1] in "+-*":
            parts = line.split()
            if len(parts) >= 2:
                if not call:
                    cost[fn] += int(parts[1])
                call = False
    return cost
a, b = own(short), own(long)
steady = collections.Counter({k: b[k] - a[k] for k in b.keys() | a.keys()})
total = sum(steady.values())
setup = (sum(a.values()) - total / n * warm) / 16
print(f"  zonegate-{target:<10} {total / n:>10,.0f} instructions per request, steady state "
      f"({n} requests; each connection's set-up and handshake: {setup:,.0f})")
for name, cost in steady.most_common(25):
    print(f"    {cost / total * 100:5.1f}%  {cost / n:>8,.0f}/req  {name[:110]}")
PY
}

if has_section cpu; then
  log "== where the server's time goes: user and system CPU per request, $CONNS connections =="
  for t in nginx haproxy zonegate-full; do
    for m in h1 h2; do try cpu_run "$t" "$m"; done
  done
fi

if has_section callgrind; then
  command -v valgrind >/dev/null || die "the callgrind section needs valgrind (apt install valgrind)"
  log "== callgrind: instructions per request, 16 keep-alive connections =="
  for t in full allowall contain; do try cg_run "$t"; done
  try cg_run full h2
  [[ -f "$ZWORK/otlp-sink.txt" ]] && log "OTLP sink: $(cat "$ZWORK/otlp-sink.txt")"
fi

# --- summary -----------------------------------------------------------------------------------
python3 - "$OUTDIR" "$RATE" "$RATE_CONNS" <<'PY' | tee "$OUTDIR/summary.txt"
import csv, glob, json, os, statistics, sys

out, rate, rate_conns = sys.argv[1], sys.argv[2], sys.argv[3]

def oha_rows():
    rows = []
    for p in sorted(glob.glob(os.path.join(out, "oha-*.tsv"))):
        with open(p) as f:
            rows += list(csv.DictReader(f, delimiter="\t"))
    return rows

def med(rows, target, mode, key):
    vals = [float(r[key]) for r in rows if r["target"] == target and r["mode"] == mode]
    return statistics.median(vals) if vals else None

def lt(label):
    try:
        with open(os.path.join(out, f"lt-{label}.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "n/a"

def num(v, fmt="{:,.0f}"):
    return fmt.format(v) if v is not None else "n/a"

rows = oha_rows()
if rows:
    print("Throughput (oha via ../shared/bench/run.sh; medians of the reps)")
    print(f"  {'target':<20} {'mode':<4} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'srv CPU%':>8} "
          f"{'req/s/core':>10} {'RSS MiB':>7} {'non2xx+err':>10}")
    seen = []
    for r in rows:
        k = (r["target"], r["mode"])
        if k in seen:
            continue
        seen.append(k)
        t, m = k
        rps, cpu = med(rows, t, m, "rps"), med(rows, t, m, "srv_cpu_pct")
        bad = sum(int(x["non2xx"]) + int(x["errors"]) for x in rows if (x["target"], x["mode"]) == k)
        print(f"  {t:<20} {m:<4} {num(rps):>9} {num(med(rows, t, m, 'p50_ms'), '{:.2f}'):>7} "
              f"{num(med(rows, t, m, 'p99_ms'), '{:.2f}'):>7} {num(cpu):>8} "
              f"{num(rps * 100 / max(cpu, 1) if rps is not None else None):>10} "
              f"{num(med(rows, t, m, 'rss_mib'), '{:.1f}'):>7} {bad:>10}")
    print()

labels = sorted(os.path.basename(p)[3:-5] for p in glob.glob(os.path.join(out, "lt-*.json")))
if labels:
    print("zonegate-loadtest runs (latency in us; open loop: from the intended send time)")
    print(f"  {'run':<34} {'req/s':>8} {'p50':>8} {'p90':>8} {'p99':>8} {'p99.9':>8} {'max':>9} "
          f"{'srv CPU%':>8} {'RSS MiB':>7}  statuses / errors / TLS handshakes")
    for label in labels:
        r = lt(label)
        l, b = r.get("latency_us") or {}, r.get("bench", {})
        extra = f"{r.get('status', {})} {r.get('error_kinds', {}) or ''} {r.get('tls_handshakes', {})}"
        print(f"  {label:<34} {num(r.get('rps')):>8} {num(l.get('p50'), '{:.0f}'):>8} "
              f"{num(l.get('p90'), '{:.0f}'):>8} {num(l.get('p99'), '{:.0f}'):>8} "
              f"{num(l.get('p99.9'), '{:.0f}'):>8} {num(l.get('max'), '{:.0f}'):>9} "
              f"{num(b.get('server_cpu_pct'), '{:.0f}'):>8} {num(b.get('server_peak_rss_mib'), '{:.1f}'):>7}  {extra}")
    print()

cpu = {}
for p in sorted(glob.glob(os.path.join(out, "cpu-*.json"))):
    try:
        with open(p) as f:
            r = json.load(f)
        cpu[(r["target"], r["mode"])] = r
    except (OSError, ValueError, KeyError):
        pass
if cpu:
    print("Where the server's time goes (closed loop, keep-alive; CPU time per request from /proc;")
    print("system calls per request counted in a second run under strace)")
    print(f"  {'target':<16} {'mode':<4} {'req/s':>8} {'user us':>8} {'sys us':>8} {'total us':>8}  syscalls per request")
    for (t, m), r in cpu.items():
        u, y = r.get("user_us_per_req"), r.get("sys_us_per_req")
        calls = r.get("syscalls_per_req") or {}
        top = ", ".join(f"{k} {v}" for k, v in list(calls.items())[:6])
        print(f"  {t:<16} {m:<4} {num(r.get('rps')):>8} {num(u, '{:.1f}'):>8} {num(y, '{:.1f}'):>8} "
              f"{num(u + y if u is not None and y is not None else None, '{:.1f}'):>8}  "
              f"{sum(calls.values()):.1f}: {top}")
    print()

print("Against the targets (preliminary: short runs on a shared 2-CPU VM; noisy)")
def per_core(target, mode):
    vals = [float(r["rps"]) * 100 / max(float(r["srv_cpu_pct"]), 1)
            for r in rows if r["target"] == target and r["mode"] == mode]
    return statistics.median(vals) if vals else None

def lt_per_core(r):
    if not r or not r.get("bench", {}).get("server_cpu_pct"):
        return None
    return r.get("rps", 0) * 100 / r["bench"]["server_cpu_pct"]

zf_h1, ng_h1 = med(rows, "zonegate-full", "h1", "rps"), med(rows, "nginx", "h1", "rps")
zf_p99, ng_p99 = med(rows, "zonegate-full", "h1", "p99_ms"), med(rows, "nginx", "h1", "p99_ms")
za_h1 = med(rows, "zonegate-allowall", "h1", "rps")
print(f"  h1 keep-alive req/s, zonegate-full / nginx: {ratio(zf_h1, ng_h1)} "
      f"({num(zf_h1)} vs {num(ng_h1)}; target >= 1.3x); "
      f"p99 {num(zf_p99, '{:.2f}')} vs {num(ng_p99, '{:.2f}')} ms (target: no worse)")
zf_h2, ng_h2 = med(rows, "zonegate-full", "h2", "rps"), med(rows, "nginx", "h2", "rps")
print(f"    per server core (req/s / server CPU share): {ratio(per_core('zonegate-full', 'h1'), per_core('nginx', 'h1'))} "
      f"({num(per_core('zonegate-full', 'h1'))} vs {num(per_core('nginx', 'h1'))})")
print(f"  h2 req/s, zonegate-full / nginx: {ratio(zf_h2, ng_h2)} ({num(zf_h2)} vs {num(ng_h2)}); "
      f"per server core {ratio(per_core('zonegate-full', 'h2'), per_core('nginx', 'h2'))}")
cost = f"{(1 - zf_h1 / za_h1) * 100:.1f}%" if zf_h1 and za_h1 else "n/a"
zc, zac = per_core("zonegate-full", "h1"), per_core("zonegate-allowall", "h1")
cost_core = f"{(1 - zc / zac) * 100:.1f}%" if zc and zac else "n/a"
print(f"  identity path cost, h1 req/s full / allow-all: {ratio(zf_h1, za_h1)} "
      f"(costs {cost}; per server core {cost_core}; target <= 5%)")
for mode in ("h1", "h2"):
    zfm, zcm = per_core("zonegate-full", mode), per_core("zonegate-contain", mode)
    if zfm and zcm:
        print(f"  limits + tracing at 1%, {mode} req/s per server core, contain / full: "
              f"{ratio(zcm, zfm)} (costs {(1 - zcm / zfm) * 100:.1f}%; target <= 5%)")
d, z, n = lt("latency-direct-http"), lt("latency-zonegate-full"), lt("latency-nginx")
if d and z:
    dl, zl = d.get("latency_us") or {}, z.get("latency_us") or {}
    add = {k: zl.get(k, 0) - dl.get(k, 0) for k in ("p50", "p99")}
    print(f"  added latency at {rate} req/s over {rate_conns} conns, zonegate-full vs direct-http: "
          f"p50 +{add['p50']:.0f} us (target <= +80), p99 +{add['p99']:.0f} us (target <= +200)")
    if n:
        nl = n.get("latency_us") or {}
        print(f"    (nginx over direct-http: p50 +{nl.get('p50', 0) - dl.get('p50', 0):.0f} us, "
              f"p99 +{nl.get('p99', 0) - dl.get('p99', 0):.0f} us)")
for mode in ("h1", "h2"):
    def total(t):
        r = cpu.get((t, mode)) or {}
        u, y = r.get("user_us_per_req"), r.get("sys_us_per_req")
        return u + y if u is not None and y is not None else None
    z, peers = total("zonegate-full"), [v for v in (total("nginx"), total("haproxy")) if v]
    if z and peers:
        best = min(peers)
        print(f"  CPU time per request, {mode}: zonegate-full {z:.1f} us, best peer {best:.1f} us: "
              f"{best / z:.2f}x per server core (cpu section)")
def cg(label):
    try:
        with open(os.path.join(out, f"callgrind-{label}.txt")) as f:
            return float(f.readline().split()[1].replace(",", ""))
    except (OSError, ValueError, IndexError):
        return None
cf, ca = cg("full"), cg("allowall")
if cf and ca:
    print(f"  identity path, instructions per request in steady state (callgrind): full {cf:,.0f}, "
          f"allow-all {ca:,.0f}: +{(cf / ca - 1) * 100:.1f}% (target <= 5%)")
hz, hn = lt("handshake-zonegate-full"), lt("handshake-nginx")
if hz and hn:
    print(f"  full mTLS handshakes/s, zonegate-full / nginx: {ratio(hz.get('rps'), hn.get('rps'))} "
          f"({num(hz.get('rps'))} vs {num(hn.get('rps'))}; target >= 1.5x; "
          f"server CPU {hz['bench']['server_cpu_pct']}% vs {hn['bench']['server_cpu_pct']}%; "
          f"per server core {ratio(lt_per_core(hz), lt_per_core(hn))})")
hr = lt("handshake-resumed-zonegate-full")
if hr:
    print(f"  resumed handshakes/s, zonegate-full: {num(hr.get('rps'))} "
          f"(TLS {hr.get('tls_handshakes')})")
m100 = lt("latency-zonegate-full-100c")
if m100:
    print(f"  peak RSS, zonegate-full at {rate} req/s over 100 conns: "
          f"{m100['bench']['server_peak_rss_mib']} MiB (target <= 20 MB)")
for t in ("zonegate-full", "nginx"):
    i = lt(f"idle-{t}")
    if i:
        b = i["bench"]
        print(f"  idle mTLS connections, {t}: {b['kib_per_connection']} KiB each "
              f"(RSS {b['server_rss_before_mib']} -> {b['server_rss_held_mib']} MiB with "
              f"{b['established_max']} established; target <= 32 KiB); held "
              f"{i.get('held')} of {i.get('connections')} (target: 10,000 held)")
PY
log "results: $OUTDIR"
