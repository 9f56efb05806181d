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

# tps CLIENTS PGBENCH_ARGS...: transactions per second, excluding connection time.
tps() {
  local clients=$1
  shift
  PGPASSWORD=postgres "$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$db_port" -U postgres -c "$clients" -j "$clients" \
    -T "$seconds" "$@" postgres 2>/dev/null | sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

log "measuring for ${seconds}s per figure"
base1=$(tps 1 -b simple-update)
base8=$(tps 8 -b simple-update)
credit1=$(tps 1 -f bench/credit.pgbench)
credit8=$(tps 8 -f bench/credit.pgbench)
hot8=$(tps 8 -f bench/spend-hot.pgbench)
spread8=$(tps 8 -f bench/spend-spread.pgbench)

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

| what | clients | per second | ratio to simple-update |
| --- | --- | --- | --- |
| baseline: pgbench simple-update | 1 | ${base1} | 1.00 |
| baseline: pgbench simple-update | 8 | ${base8} | 1.00 |
| crediting RPC \`handle_stripe_event\` (new paid session) | 1 | ${credit1} | $(ratio "$credit1" "$base1") |
| crediting RPC \`handle_stripe_event\` (new paid session) | 8 | ${credit8} | $(ratio "$credit8" "$base8") |
| \`spend_credits\`, one hot user | 8 | ${hot8} | $(ratio "$hot8" "$base8") |
| \`spend_credits\`, 10,000 users | 8 | ${spread8} | $(ratio "$spread8" "$base8") |
| webhook end to end (HTTP, signature, RPC) | 8 | ${webhook8} | $(ratio "$webhook8" "$base8") |

The end-to-end webhook runs at $(ratio "$webhook8" "$credit8") of the crediting RPC alone at 8 clients
(${webhook_errors} non-200 answers). Goal from issue 2: the crediting RPC at 8 clients at least 0.7 of
simple-update.

Reading the figures: \`simple-update\` touches three rows and writes one history row without
indexes; one credited session inserts the inbox event, the recharge and the ledger entry (eleven
index entries between them, two foreign-key checks against \`auth.users\`) and updates the balance
and the inbox row, all in PL/pgSQL under row and advisory locks. At one client both are bound by
the commit flush; at eight clients on this machine both are bound by CPU, and the ratio shows the
real cost per credit. The single transaction touches more than 16 relations, PostgreSQL 15's
fast-path lock limit, so lock-manager traffic also grows with clients. Dropping four secondary
indexes or the exception block changed the ratio by less than the run-to-run noise, so the goal of
0.7 is not met by tuning; it would need a leaner write (fewer tables per credit), which the
guide's three-row model and the inbox rule out.

What each figure runs: \`bench/credit.pgbench\`, \`bench/spend-hot.pgbench\`,
\`bench/spend-spread.pgbench\` (fixtures in \`bench/setup.sql\`), and \`bench/webhook-load.ts\` through
the local gateway and the \`stripe-webhook\` function.
REPORT
)
# The diagnosis at scale has its own throwaway database; BENCH_SCALE_USERS=0 skips it.
if [ "${BENCH_SCALE_USERS:-1000000}" != "0" ]; then
  kill "$stack_pid" 2>/dev/null && wait "$stack_pid" 2>/dev/null
  stack_pid=""
  db_stop "$dir"
  report+=$'\n'$(bash scripts/bench-scale.sh)
fi
echo "$report"
echo "$report" >docs/benchmarks.md
