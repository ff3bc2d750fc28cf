#!/usr/bin/env bash
# Issue 6's benchmark: every scenario in one run, each figure against its baseline
# measured on the same machine in the same run, written to docs/benchmarks.md.
#
#   scripts/bench.sh                      # every scenario, writes docs/benchmarks.md
#   scripts/bench.sh pgbench update       # a subset: only those sections are rewritten
#   scripts/bench.sh --quick              # smoke test: small data, short runs, no write
#   scripts/bench.sh --quick --write ...  # smoke test that still writes the report
#
# Scenarios: pgbench (CKAN's statement shapes at saturation, NOTIFY on and off), rate
# (the same at a fixed 200 transactions/s), update (one UPDATE of 100 000 resource
# rows), bytes (change-log bytes per captured row), latency (commit → receipt at 100
# and 1 000 events/s, and the side schema's size under that load with retention),
# ckan (real CKAN 2.12 actions in-process), delivery (`cargo bench --bench delivery`),
# poll (one poll pass over BENCH_POLL_DATASETS datasets, default 100 000, 5 resources
# each: `cargo bench --bench poll`).
#
# It starts what it needs: a throwaway PostgreSQL cluster (initdb from `pg_config
# --bindir`, fsync on as in production) on a free 127.0.0.1 port, the service, and
# stops all of it on exit, failure or Ctrl-C.
#
# Environment: BENCH_DURATION (seconds per pgbench run, default 30), BENCH_ROUNDS
# (interleaved rounds of each pgbench variant, default 2), BENCH_DATASETS (default
# 20000; 5 resources each, so the update scenario touches 100 000 rows).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
all_scenarios=(pgbench rate update bytes latency ckan delivery poll)
quick=0
write=1
scenarios=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1; write=0 ;;
    --write) write=2 ;;
    --no-write) write=0 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) [[ " ${all_scenarios[*]} " == *" $arg "* ]] || { echo "bench.sh: unknown scenario $arg" >&2; exit 2; }
       scenarios+=("$arg") ;;
  esac
done
[ "$write" = 2 ] && write=1
[ ${#scenarios[@]} -gt 0 ] || scenarios=("${all_scenarios[@]}")
wants() { [[ " ${scenarios[*]} " == *" $1 "* ]]; }

if [ "$quick" = 1 ]; then
  duration=${BENCH_DURATION:-5}; rounds=${BENCH_ROUNDS:-1}; datasets=${BENCH_DATASETS:-2000}
  update_runs=1; ckan_rounds=1; ckan_iterations=${BENCH_CKAN_ITERATIONS:-10}; rate_seconds=${BENCH_RATE_SECONDS:-3}
else
  duration=${BENCH_DURATION:-30}; rounds=${BENCH_ROUNDS:-2}; datasets=${BENCH_DATASETS:-20000}
  update_runs=3; ckan_rounds=4; ckan_iterations=${BENCH_CKAN_ITERATIONS:-60}; rate_seconds=${BENCH_RATE_SECONDS:-20}
fi
resources=5
clients=4

work=$(mktemp -d /tmp/ckwh-bench.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/sections" "$work/logs"
pids=()
pgdata=$work/pgdata
bindir=$(pg_config --bindir)
as_pg=()
[ "$(id -u)" = 0 ] && as_pg=(runuser -u postgres --)

log() { echo "bench.sh: $*" >&2; }

cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -f "$pgdata/postmaster.pid" ]; then
    "${as_pg[@]}" "$bindir/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null 2>&1 || true
  fi
  if [ "$rc" != 0 ]; then
    log "failed (exit $rc); PostgreSQL log tail:"; tail -n 20 "$work/pg.log" >&2 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -----------------------------------------------------------------------------
log "building release"
(cd "$repo" && cargo build --release --bins -q)
bin=$repo/target/release/ckan-webhooks

# --- PostgreSQL --------------------------------------------------------------------------
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
chown postgres "$work" 2>/dev/null || true
"${as_pg[@]}" "$bindir/initdb" -D "$pgdata" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >/dev/null
# Written down in the report: production-like durability, sizes for a 24 GiB machine.
pg_settings="fsync=on synchronous_commit=on full_page_writes=on shared_buffers=1GB max_wal_size=4GB checkpoint_timeout=15min max_connections=100"
{
  echo "listen_addresses = '127.0.0.1'"
  echo "port = $port"
  echo "unix_socket_directories = '$work'"
  for s in $pg_settings; do echo "${s%%=*} = '${s#*=}'"; done
} >> "$pgdata/postgresql.conf"
"${as_pg[@]}" "$bindir/pg_ctl" -D "$pgdata" -l "$work/pg.log" -w start >/dev/null
admin_url="postgres://postgres@127.0.0.1:$port/postgres"
db_url() { echo "postgres://postgres@127.0.0.1:$port/$1"; }
q() { local db=$1; shift; psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d "$db" "$@"; }
qv() { local db=$1; shift; q "$db" -At -c "$*"; }
pg_version=$(qv postgres "SHOW server_version")
log "PostgreSQL $pg_version on 127.0.0.1:$port"

# The template every scenario copies: CKAN 2.12's tables, the portal's data and the
# side schema (installed, then its triggers removed: capture off).
needs_template=0
for s in pgbench rate update bytes; do wants "$s" && needs_template=1; done
if [ "$needs_template" = 1 ]; then
  log "loading $datasets datasets × $resources resources"
  qv postgres "CREATE DATABASE bench_tpl" >/dev/null
  q bench_tpl -f "$repo/sql/ckan/ckan-2.12-core.sql" >/dev/null
  q bench_tpl -v datasets="$datasets" -v resources="$resources" -f "$repo/benches/pgbench/load.sql" >/dev/null
  "$bin" install --database-url "$(db_url bench_tpl)" >/dev/null
  "$bin" uninstall --database-url "$(db_url bench_tpl)" >/dev/null
  qv bench_tpl "VACUUM ANALYZE" >/dev/null
fi

# A fresh copy of the template, capture on or off, NOTIFY on or off.
fresh_db() {
  local name=$1 capture=$2 notify=$3
  qv postgres "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
  qv postgres "CREATE DATABASE $name TEMPLATE bench_tpl" >/dev/null
  if [ "$capture" = on ]; then "$bin" install --database-url "$(db_url "$name")" >/dev/null; fi
  if [ "$notify" = off ]; then qv postgres "ALTER DATABASE $name SET ckan_webhooks.notify = off" >/dev/null; fi
  qv "$name" "CHECKPOINT" >/dev/null
}

service_pid=
start_service() {
  "$bin" run --database-url "$(db_url "$1")" --listen 127.0.0.1:0 --site-url http://ckan.bench \
    --token-secret bench >"$work/logs/service-$1.log" 2>&1 &
  service_pid=$!
  pids+=("$service_pid")
  sleep 1
  kill -0 "$service_pid" || { tail "$work/logs/service-$1.log" >&2; return 1; }
}
stop_service() {
  [ -n "$service_pid" ] || return 0
  kill -TERM "$service_pid" 2>/dev/null || true
  wait "$service_pid" 2>/dev/null || true
  service_pid=
}

# p50 and p99 in ms of the per-transaction latencies (µs, 3rd column) of pgbench logs.
percentiles() {
  cat "$@" | awk '{print $3}' | sort -n | awk '
    { v[NR] = $1 }
    END { if (NR == 0) { print "nan nan 0"; exit }
          i50 = int(NR * 0.50 + 0.999999); i99 = int(NR * 0.99 + 0.999999)
          printf "%.2f %.2f %d\n", v[i50] / 1000, v[i99] / 1000, NR }'
}

scripts=(-f "$repo/benches/pgbench/package_update.sql@1" -f "$repo/benches/pgbench/resource_create.sql@1"
         -f "$repo/benches/pgbench/package_patch.sql@1")

# One pgbench run of the three shapes on a fresh database; its TPS goes to LABEL.tps.
# pgbench_run LABEL CAPTURE NOTIFY SERVICE [extra pgbench args]
pgbench_run() {
  local label=$1 capture=$2 notify=$3 service=$4; shift 4
  fresh_db bench_run "$capture" "$notify"
  [ "$service" = yes ] && start_service bench_run
  local out
  out=$(cd "$work/logs" && pgbench -n -h 127.0.0.1 -p "$port" -U postgres -c "$clients" -j 2 \
        -T "$duration" -D datasets="$datasets" "${scripts[@]}" --log --log-prefix="$label" "$@" bench_run 2>&1) \
    || { echo "$out" >&2; return 1; }
  stop_service
  echo "$out" > "$work/logs/$label.out"
  local pending
  pending=$(qv bench_run "SELECT count(*) FROM ckan_webhooks.change")
  echo "$pending" > "$work/logs/$label.pending"
  echo "$out" | awk '/^tps = / {print $3}' > "$work/logs/$label.tps"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
mean() { awk '{ s += $1; n++ } END { if (n) printf "%.0f", s / n; else print "nan" }'; }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == ">=") ? v >= t : v <= t; print ok ? "met" : "**missed**" }'; }

# --- scenario: pgbench at saturation -----------------------------------------------------
scenario_pgbench() {
  local variants=(base capture_notify capture_poll capture_nodrain)
  local r v tps
  for ((r = 1; r <= rounds; r++)); do
    for v in "${variants[@]}"; do
      case $v in
        base) pgbench_run "sat-$v-$r" off on yes ;;
        capture_notify) pgbench_run "sat-$v-$r" on on yes ;;
        capture_poll) pgbench_run "sat-$v-$r" on off yes ;;
        capture_nodrain) pgbench_run "sat-$v-$r" on on no ;;
      esac
      tps=$(cat "$work/logs/sat-$v-$r.tps")
      log "pgbench saturation round $r $v: $tps TPS"
      echo "$tps" >> "$work/logs/sat-$v.tps"
    done
  done
  local base_tps base_p50 base_p99 n
  base_tps=$(mean < "$work/logs/sat-base.tps")
  read -r base_p50 base_p99 n < <(percentiles "$work"/logs/sat-base-[0-9]*.[0-9]*)
  {
    echo "| variant | TPS (mean of $rounds) | runs | p50 | p99 | transactions | TPS ratio (≥ 0.8) | p99 ratio (≤ 1.3) | change rows left |"
    echo "|---|---|---|---|---|---|---|---|---|"
    echo "| no capture (baseline) | $base_tps | $(paste -sd/ "$work/logs/sat-base.tps") | $base_p50 ms | $base_p99 ms | $n | – | – | – |"
    local name p50 p99 tr pr
    for v in capture_notify capture_poll capture_nodrain; do
      case $v in
        capture_notify) name="capture, NOTIFY on, service draining" ;;
        capture_poll) name="capture, NOTIFY off (service polls every 1 s), service draining" ;;
        capture_nodrain) name="capture, NOTIFY on, no service (log grows)" ;;
      esac
      tps=$(mean < "$work/logs/sat-$v.tps")
      read -r p50 p99 n < <(percentiles "$work"/logs/sat-"$v"-[0-9]*.[0-9]*)
      tr=$(ratio "$tps" "$base_tps"); pr=$(ratio "$p99" "$base_p99")
      echo "| $name | $tps | $(paste -sd/ "$work/logs/sat-$v.tps") | $p50 ms | $p99 ms | $n | $tr $(verdict "$tr" '>=' 0.8) | $pr $(verdict "$pr" '<=' 1.3) | $(cat "$work/logs/sat-$v-$rounds.pending") |"
    done
  } > "$work/sections/pgbench.table"
  cat > "$work/sections/pgbench.md" <<EOF
## CKAN's statement shapes at saturation (\`scripts/bench.sh pgbench\`)

pgbench, $clients clients (\`-j 2\`), ${duration} s per run, $rounds interleaved rounds of
every variant, each run on a fresh copy of the loaded database. The three scripts in
\`benches/pgbench/\` (package_update, resource_create, package_patch of trace.md, equal
weights) each run the action's transaction (reads, the traced writes) and then the
activity insert in its own transaction; one script execution counts as one transaction.
Latency percentiles are computed from pgbench's per-transaction logs of all rounds.
The service (\`ckan-webhooks run\`, no subscriptions: it derives and records events and
deletes the consumed changes) runs beside pgbench on the same 2 cores in the
"draining" variants and in the baseline (where it has nothing to do).

$(cat "$work/sections/pgbench.table")
EOF
}

# --- scenario: fixed rate ----------------------------------------------------------------
scenario_rate() {
  local r v
  for ((r = 1; r <= rounds; r++)); do
    for v in base capture; do
      if [ "$v" = base ]; then pgbench_run "rate-$v-$r" off on yes --rate 200
      else pgbench_run "rate-$v-$r" on on yes --rate 200; fi
      log "pgbench --rate 200 round $r $v done"
    done
  done
  local bp50 bp99 bn cp50 cp99 cn pr
  read -r bp50 bp99 bn < <(percentiles "$work"/logs/rate-base-[0-9]*.[0-9]*)
  read -r cp50 cp99 cn < <(percentiles "$work"/logs/rate-capture-[0-9]*.[0-9]*)
  pr=$(ratio "$cp99" "$bp99")
  cat > "$work/sections/rate.md" <<EOF
## The same shapes at a fixed 200 transactions/s (\`scripts/bench.sh rate\`)

\`pgbench --rate 200\`, otherwise as above ($clients clients, ${duration} s, $rounds rounds,
service draining). Latency is pgbench's, counted from each transaction's scheduled
start, so queueing shows.

| variant | transactions | p50 | p99 | p99 ratio (≤ 1.2) |
|---|---|---|---|---|
| no capture (baseline) | $bn | $bp50 ms | $bp99 ms | – |
| capture, NOTIFY on, service draining | $cn | $cp50 ms | $cp99 ms | $pr $(verdict "$pr" '<=' 1.2) |
EOF
}

# --- scenario: one UPDATE of every resource row -------------------------------------------
scenario_update() {
  local rows i v ms
  rows=$(qv bench_tpl "SELECT count(*) FROM resource")
  for ((i = 1; i <= update_runs; i++)); do
    for v in off on; do
      fresh_db bench_upd "$v" on
      ms=$(q bench_upd -At -c '\timing on' \
            -c "UPDATE resource SET url = url || '?v=2', last_modified = now(), metadata_modified = now()" \
           | awk '/^Time:/ {print $2}')
      log "UPDATE of $rows resource rows, capture $v: $ms ms"
      echo "$ms" >> "$work/logs/update-$v.ms"
      if [ "$v" = on ]; then
        qv bench_upd "SELECT pg_total_relation_size('ckan_webhooks.change')" > "$work/logs/update-change.bytes"
      fi
    done
  done
  median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
  local off on r mb
  off=$(median < "$work/logs/update-off.ms"); on=$(median < "$work/logs/update-on.ms")
  r=$(ratio "$on" "$off")
  mb=$(awk -v b="$(cat "$work/logs/update-change.bytes")" 'BEGIN { printf "%.1f", b / 1048576 }')
  cat > "$work/sections/update.md" <<EOF
## One UPDATE of $rows resource rows (\`scripts/bench.sh update\`)

\`UPDATE resource SET url = url || '?v=2', last_modified = now(), metadata_modified =
now()\` over every row, autocommit, on a fresh copy of the database each time (after a
CHECKPOINT); median of $update_runs runs each, interleaved. With capture the change log
holds $mb MiB afterwards.

| variant | runs (ms) | median | ratio (≤ 2) |
|---|---|---|---|
| no capture (baseline) | $(paste -sd/ "$work/logs/update-off.ms") | $off ms | – |
| capture | $(paste -sd/ "$work/logs/update-on.ms") | $on ms | $r $(verdict "$r" '<=' 2) |
EOF
}

# --- scenario: change-log bytes per captured row -------------------------------------------
scenario_bytes() {
  local shape n=500
  {
    echo "| shape | transactions | captured rows (table op × n) | bytes per row (pg_column_size) | log bytes per row (table + index) | log bytes per transaction |"
    echo "|---|---|---|---|---|---|"
    for shape in package_update resource_create package_patch; do
      fresh_db bench_bytes on on
      pgbench -n -h 127.0.0.1 -p "$port" -U postgres -c 1 -t "$n" -D datasets="$datasets" \
        -f "$repo/benches/pgbench/$shape.sql" bench_bytes >/dev/null 2>&1
      qv bench_bytes "VACUUM ANALYZE ckan_webhooks.change" >/dev/null
      local mix row total count
      mix=$(qv bench_bytes "SELECT string_agg(table_name || ' ' || op::text || ' ×' || n, ', ' ORDER BY table_name, op)
                            FROM (SELECT table_name, op, count(*) n FROM ckan_webhooks.change GROUP BY 1, 2) s")
      row=$(qv bench_bytes "SELECT round(avg(pg_column_size(c.*))) FROM ckan_webhooks.change c")
      total=$(qv bench_bytes "SELECT pg_total_relation_size('ckan_webhooks.change')")
      count=$(qv bench_bytes "SELECT count(*) FROM ckan_webhooks.change")
      echo "| $shape | $n | $mix | $row | $((total / count)) | $((total / n)) |"
    done
  } > "$work/sections/bytes.table"
  cat > "$work/sections/bytes.md" <<EOF
## Change-log bytes per captured row (\`scripts/bench.sh bytes\`)

Each shape's script alone, one client, $n transactions, capture on and no service, so
every captured row stays in \`ckan_webhooks.change\`. Per row: the average
\`pg_column_size\` of the change row; the table with its indexes
(\`pg_total_relation_size\`) divided by the rows and by the transactions.

$(cat "$work/sections/bytes.table")
EOF
}

# --- scenario: commit → receipt latency at a steady rate ----------------------------------
scenario_latency() {
  local out
  out=$(cd "$repo" && CKAN_WEBHOOKS_BENCH_DATABASE_URL=$admin_url RATE_SECONDS=$rate_seconds \
        cargo bench -q --bench rate 2>"$work/logs/rate-bench.err") \
    || { cat "$work/logs/rate-bench.err" >&2; return 1; }
  echo "$out" >&2
  {
    echo "## Commit → receipt at a steady rate (\`scripts/bench.sh latency\`, \`cargo bench --bench rate\`)"
    echo
    echo "$out" | sed -n '/^## notes/,$p' | sed '1d'
    echo
    echo "| scenario | figure | baseline | ratio / target |"
    echo "|---|---|---|---|"
    echo "$out" | grep '^BENCH ' | sed 's/^BENCH /| /'
  } > "$work/sections/latency.md"
}

# --- scenario: real CKAN 2.12 -------------------------------------------------------------
scenario_ckan() {
  local venv
  venv=$(bash "$repo/scripts/ckan-venv.sh" 2>>"$work/logs/venv.log" | tail -n 1) || {
    echo "## Real CKAN 2.12 actions (\`scripts/bench.sh ckan\`)" > "$work/sections/ckan.md"
    echo >> "$work/sections/ckan.md"
    echo "Not run: the CKAN venv could not be built (scripts/ckan-venv.sh)." >> "$work/sections/ckan.md"
    return 0
  }
  qv postgres "CREATE DATABASE bench_ckan" >/dev/null
  local out
  out=$("$venv/bin/python" "$repo/benches/ckan_actions.py" --database-url "$(db_url bench_ckan)" \
        --binary "$bin" --iterations "$ckan_iterations" --rounds "$ckan_rounds" --work "$work/ckan" \
        2>"$work/logs/ckan.err") || { tail -n 40 "$work/logs/ckan.err" >&2; return 1; }
  echo "$out" >&2
  {
    echo "## Real CKAN 2.12 actions in-process (\`scripts/bench.sh ckan\`)"
    echo
    echo "$out" | sed -n '/^## notes/,$p' | sed '1d'
    echo
    echo "| scenario | figure | baseline | ratio / target |"
    echo "|---|---|---|---|"
    echo "$out" | grep '^BENCH ' | sed 's/^BENCH /| /'
  } > "$work/sections/ckan.md"
}

# --- scenario: delivery (owned by the delivery benchmark) ---------------------------------
scenario_delivery() {
  local out
  out=$(cd "$repo" && CKAN_WEBHOOKS_BENCH_DATABASE_URL=$admin_url cargo bench -q --bench delivery 2>"$work/logs/delivery.err") \
    || { log "cargo bench --bench delivery failed"; tail -n 20 "$work/logs/delivery.err" >&2; out=""; }
  {
    echo "## Delivery (\`cargo bench --bench delivery\`)"
    echo
    if echo "$out" | grep -q '^BENCH '; then
      echo "| scenario | figure | baseline | ratio / target |"
      echo "|---|---|---|---|"
      echo "$out" | grep '^BENCH ' | sed 's/^BENCH /| /'
    else
      echo "The delivery benchmark printed no \`BENCH\` lines in this run; its own output:"
      echo
      # Its tables, each on its own (a blank line before every header row but the first).
      echo "$out" | grep '^|' \
        | awk 'NR > 1 { if ($0 ~ /^\|---/ && n++) print ""; print prev } { prev = $0 } END { if (NR) print prev }' \
        || echo "(none)"
    fi
  } > "$work/sections/delivery.md"
}

# --- scenario: poll (issue 5's poll pass over a large CKAN) --------------------------------
scenario_poll() {
  local out n
  n=${BENCH_POLL_DATASETS:-$([ "$quick" = 1 ] && echo 2000 || echo 100000)}
  out=$(cd "$repo" && CKAN_WEBHOOKS_BENCH_DATABASE_URL=$admin_url CKAN_WEBHOOKS_BENCH_DATASETS=$n \
        cargo bench -q --bench poll 2>"$work/logs/poll.err") \
    || { log "cargo bench --bench poll failed"; tail -n 20 "$work/logs/poll.err" >&2; return 1; }
  {
    echo "## One poll pass over a large CKAN (\`cargo bench --bench poll\`)"
    echo
    echo "$n datasets with 5 resources, 3 tags and a group each, no triggers. A pass"
    echo "with nothing changed is what every cycle costs (the figure issue 5 asks for);"
    echo "its time is the database's, one client on loopback."
    echo
    echo "| scenario | figure | baseline | ratio / target |"
    echo "|---|---|---|---|"
    echo "$out" | grep '^BENCH ' | sed 's/^BENCH /| /'
  } > "$work/sections/poll.md"
}

for s in "${all_scenarios[@]}"; do
  if wants "$s"; then
    log "scenario $s"
    # A failing scenario is reported as such; the others still run and are written.
    if ! "scenario_$s"; then
      log "scenario $s failed"
      stop_service
      printf '## %s\n\nFailed in this run (see the output of scripts/bench.sh).\n' "$s" \
        > "$work/sections/$s.md"
    fi
    cat "$work/sections/$s.md" >&2
  fi
done

# --- report --------------------------------------------------------------------------------
commit=$(cd "$repo" && git rev-parse --short HEAD)
(cd "$repo" && git diff --quiet HEAD -- sql src benches scripts) || commit="$commit (with uncommitted changes)"
cpu=$(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2; exit }')
ram=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
{
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit$([ "$quick" = 1 ] && echo ', QUICK MODE (smoke test, not figures)'):"
  echo "$cpu, $(nproc) cores, $ram; PostgreSQL $pg_version, a throwaway cluster on 127.0.0.1"
  echo "started by the script with \`$pg_settings\`; $datasets datasets × $resources resources."
} > "$work/sections/machine.md"

if [ "$write" = 1 ]; then
  python3 "$repo/benches/report.py" "$repo/docs/benchmarks.md" "$work/sections" "${scenarios[@]}"
  log "wrote docs/benchmarks.md"
else
  cat "$work/sections/machine.md" >&2
  log "report not written (quick mode; --write to write it)"
fi
