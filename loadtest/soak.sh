#!/usr/bin/env bash
# Soak: the gateway under a steady mixed load while its policy reloads, its own certificate
# rotates and one upstream fails and returns. Loopback only, bounded in time. Run from the
# repository root:
#
#   loadtest/soak.sh [-d SECONDS] [-B] [-o DIR]
#
#   -d SEC   length of the run                                   [1800]
#   -B       do not build; use target/release/{zonegate,zonegate-loadtest} as they are
#   -o DIR   results directory                      [target/soak/<date-time>]
#
# The load, open loop, every request from the shop zone into payments, so every one is an
# identity event:
#   h1      HTTP/1.1 keep-alive, checkout and cart SVIDs 3:1, GET charge 9 : POST refund 1;
#           cart has no rule (403), checkout is allowed                         RATE_H1 req/s
#   h2      HTTP/2, 4 streams per connection, checkout's SVID and its JWT-SVID   RATE_H2 req/s
#   ledger  HTTP/1.1 to the ledger route, whose upstream is stopped at a third of the run
#           and started again a minute later (502s while it is down)         RATE_LEDGER req/s
# Meanwhile the policy is rewritten every POLICY_EVERY s (an audit rule comes and goes), the
# gateway's SVID is re-issued every ROTATE_EVERY s, and the gateway's RSS is sampled every
# 10 s. At the end it checks: no load-generator error (connect, TLS, timeout) at all; no status
# but 200/403 on h1, 200 on h2, 200/502 on ledger (502 only while that upstream was down);
# one request event per request; no event dropped; and prints RSS at 10 %, 50 % and the end.
# Exit status 0 only if every check holds. Needs nginx, openssl, curl, python3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION=1800 BUILD=1 OUTDIR=""
while getopts "d:o:Bh" o; do
  case $o in
    d) DURATION=$OPTARG ;; o) OUTDIR=$OPTARG ;; B) BUILD=0 ;;
    h) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) exit 64 ;;
  esac
done
RATE_H1="${RATE_H1:-120}" RATE_H2="${RATE_H2:-60}" RATE_LEDGER="${RATE_LEDGER:-20}"
POLICY_EVERY="${POLICY_EVERY:-20}" ROTATE_EVERY="${ROTATE_EVERY:-180}"
PORT="${PORT:-29443}" ADMIN_PORT="${ADMIN_PORT:-29901}"
PAYMENTS_PORT="${PAYMENTS_PORT:-29081}" LEDGER_PORT="${LEDGER_PORT:-29082}"

log() { printf '%s soak: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 1; }
for b in nginx openssl curl python3; do command -v "$b" >/dev/null || die "needs $b"; done

OUTDIR="${OUTDIR:-$ROOT/target/soak/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
W="$(mktemp -d "${TMPDIR:-/tmp}/zonegate-soak.XXXXXX")"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ZG="$ROOT/target/release/zonegate" LT="$ROOT/target/release/zonegate-loadtest"
if ((BUILD)); then
  log "building zonegate and zonegate-loadtest (release)"
  (cd "$ROOT" && cargo build --release --locked -p zonegate -p zonegate-loadtest) >&2
fi
[[ -x "$ZG" && -x "$LT" ]] || die "no release binaries (drop -B to build)"

# --- PKI and tokens ----------------------------------------------------------------------------
C="$W/certs"
"$ZG" dev-certs --out "$C" >/dev/null
GATEWAY_ID="spiffe://example.org/ns/payments/sa/zonegate"
CHECKOUT_ID="spiffe://example.org/ns/shop/sa/checkout"
"$ZG" token mint --key "$C/jwt-signer.key" --sub "$CHECKOUT_ID" --aud "$GATEWAY_ID" \
  --ttl $((DURATION + 600)) >"$W/checkout.jwt"

# Re-issues the gateway's SVID from the same CA (a new key, serial and validity), written
# beside the files and renamed over them, as an SVID rotation does.
rotate_gateway_svid() {
  # Made outside the gateway's directories, so that only the two renames are changes it sees.
  local d
  d="$(mktemp -d "${TMPDIR:-/tmp}/zonegate-soak-rotate.XXXXXX")"
  openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null |
    openssl pkcs8 -topk8 -nocrypt -out "$d/gateway.key"
  openssl req -new -key "$d/gateway.key" -subj "/O=SPIFFE" -out "$d/gateway.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth,clientAuth" \
    "subjectAltName=URI:$GATEWAY_ID,DNS:localhost,IP:127.0.0.1" >"$d/ext.cnf"
  openssl x509 -req -in "$d/gateway.csr" -CA "$C/ca.crt" -CAkey "$C/ca.key" \
    -set_serial "0x$(openssl rand -hex 15)" -days 1 -extfile "$d/ext.cnf" \
    -out "$d/gateway.crt" 2>/dev/null
  mv "$d/gateway.key" "$C/gateway.key.new" && mv "$d/gateway.crt" "$C/gateway.crt.new"
  mv "$C/gateway.key.new" "$C/gateway.key" && mv "$C/gateway.crt.new" "$C/gateway.crt"
  rm -rf "$d"
}

# --- upstreams (nginx, one process each, so one can be stopped) --------------------------------
start_upstream() { # name port
  local d="$W/nginx-$1"
  mkdir -p "$d/tmp"
  cat >"$d/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/tmp;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$2;
        location / { default_type application/json; return 200 '{"upstream":"$1"}'; }
    }
}
EOF
  # Its own output, not the caller's: $(start_upstream ...) waits for its stdout to close.
  nginx -p "$d" -c "$d/nginx.conf" >"$d/out.log" 2>&1 &
  echo $!
}
PAYMENTS_PID=$(start_upstream payments "$PAYMENTS_PORT")
PIDS+=("$PAYMENTS_PID")
LEDGER_PID=$(start_upstream ledger "$LEDGER_PORT")
PIDS+=("$LEDGER_PID")

# --- gateway -----------------------------------------------------------------------------------
mkdir -p "$W/policy"
cat >"$W/gateway.toml" <<EOF
zone = "payments"
workers = 1

[[listener]]
address = "127.0.0.1:$PORT"
http2 = true

[tls]
cert = "$C/gateway.crt"
key = "$C/gateway.key"

[trust_domain."example.org"]
bundle = "$C/ca.crt"

[[zone_map]]
zone = "shop"
identities = ["spiffe://example.org/ns/shop/*"]

[[zone_map]]
zone = "payments"
identities = ["spiffe://example.org/ns/payments/*"]

[token_issuer.example]
kind = "jwt-svid"
trust_domain = "example.org"
keys = "$C/jwt-bundle.json"
algorithms = ["ES256"]
max_lifetime_s = $((DURATION + 1200))

[[route]]
name = "payments-api"
path_prefix = "/payments"
upstream = "payments"
credentials = "either"

[[route]]
name = "ledger-api"
path_prefix = "/ledger"
upstream = "ledger"

[upstream.payments]
addresses = ["127.0.0.1:$PAYMENTS_PORT"]
connect_timeout_ms = 1000
read_timeout_ms = 5000

[upstream.ledger]
addresses = ["127.0.0.1:$LEDGER_PORT"]
connect_timeout_ms = 1000
read_timeout_ms = 5000

[policy]
files = ["policy"]

[events]
sink = "file"
path = "$W/events.jsonl"
capacity = 65536

[admin]
address = "127.0.0.1:$ADMIN_PORT"

[shutdown]
grace_period_s = 0
drain_timeout_s = 5
upgrade_sock = "$W/upgrade.sock"
EOF
write_policy() { # generation
  {
    cat <<'EOF'
[[rule]]
id = "checkout-charges"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/checkout"]
routes = ["payments-api"]
methods = ["GET", "POST"]
paths = ["/payments/charge", "/payments/charges/**", "/payments/refund"]

[[rule]]
id = "checkout-ledger"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/checkout"]
routes = ["ledger-api"]
methods = ["GET"]
paths = ["/ledger/**"]
EOF
    if (($1 % 2)); then
      cat <<EOF

[[rule]]
id = "staged-$1"
effect = "deny"
mode = "audit"
zones = ["shop"]
paths = ["/payments/refund"]
EOF
    fi
  } >"$W/policy/payments.toml.new"
  mv "$W/policy/payments.toml.new" "$W/policy/payments.toml"
}
write_policy 0
"$ZG" check --config "$W/gateway.toml" >"$OUTDIR/check.log" 2>&1 ||
  { cat "$OUTDIR/check.log" >&2; die "the soak config is refused"; }
RUST_LOG=warn "$ZG" run --config "$W/gateway.toml" >"$OUTDIR/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null || die "the gateway did not get ready"

# --- load --------------------------------------------------------------------------------------
URL="https://localhost:$PORT"
# zonegate-loadtest bounds one run to 10 minutes: a stream is a series of runs, back to back,
# each writing its own report (load-NAME-K.json), added up at the end.
SEGMENT="${SEGMENT:-600}"
stream() { # name, then zonegate-loadtest arguments
  local name=$1 left=$DURATION k=0 d
  shift
  while ((left > 0)); do
    d=$((left < SEGMENT ? left : SEGMENT))
    "$LT" "$URL" --ca "$C/ca.crt" -d "${d}s" --timeout 5s --json --quiet "$@" \
      >"$OUTDIR/load-$name-$k.json" 2>"$OUTDIR/load-$name-$k.err" ||
      log "$name: run $k exited non-zero (see load-$name-$k.err)"
    left=$((left - d))
    k=$((k + 1))
  done
}
stream h1 --rate "$RATE_H1" -c 16 \
  --identity "$C/checkout.crt,$C/checkout.key,weight=3,name=checkout" \
  --identity "$C/cart.crt,$C/cart.key,weight=1,name=cart" \
  --request 'GET /payments/charge weight=9' --request 'POST /payments/refund weight=1' &
H1_PID=$!
stream h2 --rate "$RATE_H2" -c 4 --h2 --streams 4 \
  --identity "$C/checkout.crt,$C/checkout.key,bearer=$W/checkout.jwt,name=checkout-token" \
  --request 'GET /payments/charges/7' &
H2_PID=$!
stream ledger --rate "$RATE_LEDGER" -c 4 \
  --identity "$C/checkout.crt,$C/checkout.key,name=checkout" \
  --request 'GET /ledger/entries' &
LEDGER_LOAD_PID=$!
PIDS+=("$H1_PID" "$H2_PID" "$LEDGER_LOAD_PID")
log "load on for ${DURATION}s (h1 $RATE_H1, h2 $RATE_H2, ledger $RATE_LEDGER req/s); results in $OUTDIR"

# --- faults and changes, while the load runs ---------------------------------------------------
START=$(date +%s)
DOWN_AT=$((DURATION / 3)) UP_AT=$((DURATION / 3 + 60))
((UP_AT < DURATION - 30)) || UP_AT=$((DURATION * 2 / 3))
echo "t_s,rss_kb" >"$OUTDIR/rss.csv"
generation=0 rotations=0 ledger_down="" ledger_up=""
next_policy=$POLICY_EVERY next_rotate=$ROTATE_EVERY next_sample=0
while :; do
  t=$(($(date +%s) - START))
  ((t < DURATION)) || break
  kill -0 "$GW_PID" 2>/dev/null || die "the gateway exited during the soak (see $OUTDIR/gateway.log)"
  if ((t >= next_sample)); then
    echo "$t,$(awk '/^VmRSS:/{print $2}' "/proc/$GW_PID/status")" >>"$OUTDIR/rss.csv"
    next_sample=$((next_sample + 10))
  fi
  if ((t >= next_policy)); then
    generation=$((generation + 1))
    write_policy "$generation"
    next_policy=$((next_policy + POLICY_EVERY))
  fi
  if ((t >= next_rotate)); then
    rotate_gateway_svid
    rotations=$((rotations + 1))
    next_rotate=$((next_rotate + ROTATE_EVERY))
  fi
  if [[ -z "$ledger_down" ]] && ((t >= DOWN_AT)); then
    kill "$LEDGER_PID" && wait "$LEDGER_PID" 2>/dev/null || true
    ledger_down=$t
    log "t=${t}s ledger upstream stopped"
  fi
  if [[ -n "$ledger_down" && -z "$ledger_up" ]] && ((t >= UP_AT)); then
    LEDGER_PID=$(start_upstream ledger "$LEDGER_PORT")
    PIDS+=("$LEDGER_PID")
    ledger_up=$t
    log "t=${t}s ledger upstream started again"
  fi
  sleep 1
done
wait "$H1_PID" "$H2_PID" "$LEDGER_LOAD_PID" || log "a load generator exited non-zero"
sleep 2 # the event sink writes within a second
curl -fs "http://127.0.0.1:$ADMIN_PORT/metrics" >"$OUTDIR/metrics.txt" || true
echo "$(($(date +%s) - START)),$(awk '/^VmRSS:/{print $2}' "/proc/$GW_PID/status")" >>"$OUTDIR/rss.csv"
cp "$W/events.jsonl" "$OUTDIR/events.jsonl"
# The certificate the gateway serves now is the last one written.
served=$(openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -CAfile "$C/ca.crt" \
  -cert "$C/checkout.crt" -key "$C/checkout.key" </dev/null 2>/dev/null |
  openssl x509 -noout -serial 2>/dev/null || true)
written=$(openssl x509 -noout -serial -in "$C/gateway.crt")
echo "served=${served#serial=} written=${written#serial=}" >"$OUTDIR/served-serial.txt"
log "policy generations: $generation, SVID rotations: $rotations, ledger down ${ledger_down}s..${ledger_up}s"

# --- checks ------------------------------------------------------------------------------------
python3 - "$OUTDIR" "$generation" "$rotations" "${ledger_down:-0}" "${ledger_up:-0}" "$START" <<'EOF' | tee "$OUTDIR/summary.txt"
import csv, json, sys
from datetime import datetime
out, generations, rotations, down, up, start = sys.argv[1], *map(int, sys.argv[2:])
failures = []
def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)

import glob
allowed = {"h1": {"200", "403"}, "h2": {"200"}, "ledger": {"200", "502"}}
total = 0
for name, statuses in allowed.items():
    runs = []
    for f in sorted(glob.glob(f"{out}/load-{name}-*.json")):
        try:
            runs.append(json.load(open(f)))
        except ValueError:
            check(False, f"{f}: a report ({open(f.replace('.json', '.err')).read().strip()})")
    requests = sum(r["requests"] for r in runs)
    errors = sum(r["errors"] for r in runs)
    status, kinds = {}, {}
    for r in runs:
        for k, v in r["status"].items():
            status[k] = status.get(k, 0) + v
        for k, v in r["error_kinds"].items():
            kinds[k] = kinds.get(k, 0) + v
    p99 = max((r["latency_us"]["p99"] for r in runs if r.get("latency_us")), default=None)
    total += requests
    print(f"{name}: {len(runs)} run(s), {requests} requests, status {status}, errors {kinds or 0}, "
          f"worst run's p99 {p99} us")
    check(runs and requests > 0, f"{name}: load was sent")
    check(errors == 0, f"{name}: no request failed without a status ({kinds})")
    check(set(status) <= statuses, f"{name}: only {sorted(statuses)} ({sorted(status)})")

kinds, reasons, requests, bad502 = {}, {}, 0, 0
# A 502 is expected from the stopped upstream only, from when it stopped until the gateway's
# health checks and pool have seen it back (a few seconds).
outside = 0
for line in open(f"{out}/events.jsonl"):
    e = json.loads(line)
    kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    if e["kind"] == "request":
        requests += 1
        reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
        if e["status"] == 502 and e.get("route") != "ledger-api":
            bad502 += 1
        if e["status"] == 502:
            t = datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() - start
            if not (down - 1 <= t <= up + 10):
                outside += 1
print(f"events: {kinds}; request reasons: {reasons}")
check(requests == total, f"one request event per request ({requests} events, {total} requests)")
check(bad502 == 0, f"502s only from the stopped upstream ({bad502} others)")
check(outside == 0, f"502s only while it was down, {down}..{up} s (+10 s) ({outside} outside)")
metrics = open(f"{out}/metrics.txt").read().splitlines() if True else []
dropped = sum(float(l.split()[-1]) for l in metrics if l.startswith("zonegate_events_dropped_total"))
check(dropped == 0, f"no event dropped ({dropped:g})")
check(generations > 0 and rotations > 0 and up > down > 0,
      f"the run had its changes: {generations} policy generations, {rotations} SVID rotations, "
      f"ledger down {down}..{up} s")

served = dict(kv.split("=", 1) for kv in open(f"{out}/served-serial.txt").read().split())
check(served["served"] == served["written"] != "",
      f"the gateway serves its last SVID (serial {served['served']}, written {served['written']})")

rss = [(int(t), int(k)) for t, k in list(csv.reader(open(f"{out}/rss.csv")))[1:] if k]
def at(frac):
    want = rss[-1][0] * frac
    return min(rss, key=lambda s: abs(s[0] - want))
(t1, r1), (t5, r5), (te, re) = at(0.1), at(0.5), rss[-1]
print(f"RSS: {r1 / 1024:.1f} MiB at {t1} s, {r5 / 1024:.1f} MiB at {t5} s, {re / 1024:.1f} MiB at {te} s "
      f"(max {max(k for _, k in rss) / 1024:.1f} MiB)")
check(re <= r1 * 1.10 + 2048, "memory flat: the end within 10 % (+2 MiB) of the 10 % mark")
sys.exit(1 if failures else 0)
EOF
