#!/usr/bin/env bash
# `npm run bench`: throughput of the package's write paths, each reported as a ratio to a
# baseline measured in the same run on the same database (pgbench's built-in
# simple-update), so figures compare across machines. Then the diagnosis at scale
# (scripts/bench-scale.sh). Writes docs/benchmarks.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bash "$REPO_ROOT/scripts/install.sh"
cd "$REPO_ROOT"

seconds=${BENCH_SECONDS:-10}
gateway_port=${BENCH_GATEWAY_PORT:-56321}
db_port=${BENCH_DB_PORT:-56322}
dir=$(mktemp -d /tmp/credits-bench.XXXXXX)
stack_pid=""
cleanup() {
  [ -n "$stack_pid" ] && kill "$stack_pid" 2>/dev/null && wait "$stack_pid" 2>/dev/null
  db_stop "$dir" immediate
  rm -rf "$dir"
}
trap cleanup EXIT

db_init "$dir"
db_start "$dir" "$db_port"
db_bootstrap "$db_port"
db_migrate "$db_port" 2>/dev/null
log "loading benchmark fixtures (10,000 buyers)"
psql_as postgres "$db_port" -f bench/setup.sql >/dev/null
PGPASSWORD=postgres "$PG_BIN/pgbench" -q -i -s 10 -h 127.0.0.1 -p "$db_port" -U postgres postgres >/dev/null 2>&1

# measure CLIENTS PGBENCH_ARGS...: prints transactions per second (connection time excluded)
# and the WAL written per transaction, which is what every commit has to flush.
measure() {
  local clients=$1 start out count
  shift
  start=$(psql_as postgres "$db_port" -At -c "select pg_current_wal_lsn()")
  out=$(PGPASSWORD=postgres "$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$db_port" -U postgres -c "$clients" -j "$clients" \
    -T "$seconds" "$@" postgres 2>/dev/null)
  count=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
  printf '%s %s\n' "$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")" \
    "$(psql_as postgres "$db_port" -At -c "select round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$start') / $count)")"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

log "measuring for ${seconds}s per figure"
read -r base1 base1_wal < <(measure 1 -b simple-update)
read -r base8 base8_wal < <(measure 8 -b simple-update)
read -r credit1 credit1_wal < <(measure 1 -f bench/credit.pgbench -D credit_function=public.handle_stripe_event)
read -r credit8 credit8_wal < <(measure 8 -f bench/credit.pgbench -D credit_function=public.handle_stripe_event)
read -r floor8 floor8_wal < <(measure 8 -f bench/credit.pgbench -D credit_function=bench.credit_writes_only)
read -r hot8 hot8_wal < <(measure 8 -f bench/spend-hot.pgbench)
read -r spread8 spread8_wal < <(measure 8 -f bench/spend-spread.pgbench)

export_stack_env "$gateway_port" "$db_port"
export STRIPE_WEBHOOK_SECRET=whsec_bench_secret SLACK_WEBHOOK_URL=""
export_env_file "$REPO_ROOT/supabase/functions/.env.example"
"$DENO" run --allow-all --config=deno.json local/stack.ts >"$dir/stack.log" 2>&1 &
stack_pid=$!
wait_http "$SUPABASE_URL/functions/v1/" || { cat "$dir/stack.log"; exit 1; }
load=$("$DENO" run --allow-all --config=deno.json bench/webhook-load.ts 8 "$seconds")
webhook8=$(sed -n 's/.*"eventsPerSecond":\([0-9.]*\).*/\1/p' <<<"$load")
webhook_errors=$(sed -n 's/.*"errors":\([0-9]*\).*/\1/p' <<<"$load")

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
memory=$(free -g | awk '/^Mem:/ { print $2 " GiB" }')
pg_version=$("$PG_BIN/postgres" --version)
deno_version=$("$DENO" --version | head -n 1)

report=$(
  cat <<REPORT
# Benchmarks

Produced by \`npm run bench\` on $(date -u +%Y-%m-%d). Every figure is measured in the same
run on the same throwaway database, ${seconds} s each; ratios divide by pgbench's built-in
\`simple-update\` at the same client count, so they compare across machines.

Machine: $(nproc) cores (${cpu:-unknown CPU}), ${memory} memory; ${pg_version}; ${deno_version}.

| what | clients | per second | ratio to simple-update | WAL per transaction, bytes |
| --- | --- | --- | --- | --- |
| baseline: pgbench simple-update | 1 | ${base1} | 1.00 | ${base1_wal} |
| baseline: pgbench simple-update | 8 | ${base8} | 1.00 | ${base8_wal} |
| crediting RPC \`handle_stripe_event\` (new paid session) | 1 | ${credit1} | $(ratio "$credit1" "$base1") | ${credit1_wal} |
| crediting RPC \`handle_stripe_event\` (new paid session) | 8 | ${credit8} | $(ratio "$credit8" "$base8") | ${credit8_wal} |
| floor: the writes of one credit and nothing else | 8 | ${floor8} | $(ratio "$floor8" "$base8") | ${floor8_wal} |
| \`spend_credits\`, one hot user | 8 | ${hot8} | $(ratio "$hot8" "$base8") | ${hot8_wal} |
| \`spend_credits\`, 10,000 users | 8 | ${spread8} | $(ratio "$spread8" "$base8") | ${spread8_wal} |
| webhook end to end (HTTP, signature, RPC) | 8 | ${webhook8} | $(ratio "$webhook8" "$base8") | |

Goal from issue 2: the crediting RPC at 8 clients at least 0.7 of simple-update; this run:
$(ratio "$credit8" "$base8"), goal $(awk -v a="$credit8" -v b="$base8" 'BEGIN { print (a / b >= 0.7) ? "met" : "not met" }'). The RPC runs at $(ratio "$credit8" "$floor8") of the floor, and the end-to-end webhook at
$(ratio "$webhook8" "$credit8") of the RPC alone (${webhook_errors} non-200 answers).

Reading the figures. The floor (\`bench.credit_writes_only\` in \`bench/setup.sql\`) makes only the
writes one credit needs, from the same payload: the inbox row, the recharge and the ledger entry
(thirteen index entries between them, two foreign-key checks, fourteen CHECK constraints) and the
balance update, and nothing else. \`simple-update\` updates three rows and appends one unindexed
history row; the WAL column shows how much more a credit has to flush at each commit. So the
distance from the floor to 1.00 is the schema's cost, which no implementation of it avoids, and
the distance from the RPC to the floor is the price of exactly-once: the event-id lookup that
turns a repeat into a duplicate, the payment's advisory lock, the buyer check, the locked balance
row and idempotency key, the deferred-event lookup and the sub-transaction that keeps a failure
on the inbox row. No single large cost is left in that part (profile below); each remaining
statement is worth a few percent.

Where a credit's time goes (perf, 8 clients, 2026-11-26): index inserts about 10%, executor
start-up of its dozen statements about 10%, commit and WAL flush about 12%, CHECK constraints
about 8% (PostgreSQL 15 rebuilds their expressions for every statement), foreign keys about 4%,
parsing the top-level call with its JSON about 7%; the lock manager about 2%, so the first
run's guess (more than 16 relations per transaction overflowing the fast-path lock slots) is
not the cause. Two avoidable costs were found and removed by migration
20261126007000_streamline_stripe_event_path: SQL-language functions with \`SET search_path\`
were parsed and planned again on every call (28% of the CPU), and a new event's inbox row was
written twice. With the event sent as JSON text as the webhook sends it (the first run built it
in SQL inside the measured transaction), the RPC went from 0.37 to the figure above.

What each figure runs: \`bench/credit.pgbench\` (the RPC and the floor), \`bench/spend-hot.pgbench\`,
\`bench/spend-spread.pgbench\` (fixtures in \`bench/setup.sql\`), and \`bench/webhook-load.ts\` through
the local gateway and the \`stripe-webhook\` function. That last figure measures the local
stand-in (gateway, function and load generator, all Deno, on the same cores as PostgreSQL), not
hosted Supabase's edge runtime and PostgREST: read it as this machine's floor for the HTTP path.
REPORT
)
# The diagnosis at scale has its own throwaway database; BENCH_SCALE_USERS=0 skips it and keeps
# the scale section already in docs/benchmarks.md, so a quick run does not drop those figures.
if [ "${BENCH_SCALE_USERS:-1000000}" != "0" ]; then
  kill "$stack_pid" 2>/dev/null && wait "$stack_pid" 2>/dev/null
  stack_pid=""
  db_stop "$dir"
  report+=$'\n'$(bash scripts/bench-scale.sh)
elif grep -q '^## Diagnosis at scale' docs/benchmarks.md 2>/dev/null; then
  report+=$'\n\n'$(sed -n '/^## Diagnosis at scale/,$p' docs/benchmarks.md)
fi
echo "$report"
echo "$report" >docs/benchmarks.md
