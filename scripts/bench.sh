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
# No checkpoint inside the measurements: one falling in a 10 s run makes that run log every
# page it first touches whole (the baseline's WAL per transaction went from ~300 bytes to
# ~2,500 in two of three rounds), so its cost landed on whichever figures it fell on. One
# explicit checkpoint and a warm-up of each workload come first instead (below); the bench
# writes a few GB of WAL at most.
cat >>"$dir/data/postgresql.conf" <<CONF
checkpoint_timeout = 1d
max_wal_size = 32GB
CONF
db_start "$dir" "$db_port"
db_bootstrap "$db_port"
db_migrate "$db_port" 2>/dev/null
log "loading benchmark fixtures (10,000 buyers)"
psql_as postgres "$db_port" -f bench/setup.sql >/dev/null
PGPASSWORD=postgres "$PG_BIN/pgbench" -q -i -s 10 -h 127.0.0.1 -p "$db_port" -U postgres postgres >/dev/null 2>&1

# busy_ticks: the machine's CPU time so far, all cores, in clock ticks (user, nice, system,
# irq, softirq and steal from /proc/stat; idle and iowait left out).
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# measure CLIENTS PGBENCH_ARGS...: prints transactions per second (connection time excluded),
# the WAL written per transaction, which is what every commit has to flush, and the machine's
# CPU time per transaction in microseconds (PostgreSQL, pgbench and the kernel together): once
# the cores are saturated, throughput is the cores divided by that.
measure() {
  local clients=$1 start out count ticks
  shift
  start=$(psql_as postgres "$db_port" -At -c "select pg_current_wal_lsn()")
  ticks=$(busy_ticks)
  out=$(PGPASSWORD=postgres "$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$db_port" -U postgres -c "$clients" -j "$clients" \
    -T "$seconds" "$@" postgres 2>/dev/null)
  ticks=$(($(busy_ticks) - ticks))
  count=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
  printf '%s %s %s\n' "$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")" \
    "$(psql_as postgres "$db_port" -At -c "select round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$start') / $count)")" \
    "$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$count" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }')"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# median: the middle of the numbers on stdin (the mean of the two middle ones for an even count).
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# The three workloads the goal compares: pgbench's baseline, the crediting RPC on a new paid
# session, and its floor (the same writes and nothing else), on the same payload.
baseline=(-b simple-update)
credit_rpc=(-f bench/credit.pgbench -D credit_function=public.handle_stripe_event)
credit_floor=(-f bench/credit.pgbench -D credit_function=bench.credit_writes_only)

log "checkpoint, then ${seconds}s of warm-up for the baseline and the crediting RPC"
psql_as supabase_admin "$db_port" -c checkpoint
measure 8 "${baseline[@]}" >/dev/null
measure 8 "${credit_rpc[@]}" >/dev/null
log "measuring for ${seconds}s per figure"
read -r base1 base1_wal base1_cpu < <(measure 1 "${baseline[@]}")
read -r credit1 credit1_wal credit1_cpu < <(measure 1 "${credit_rpc[@]}")
# Between 1 and 8 clients, once each: where the cores (2 on the machine this was written on)
# saturate and the ratio falls to the ratio of CPU time per transaction.
curve_rows=()
for clients in 2 4; do
  read -r b _ b_cpu < <(measure "$clients" "${baseline[@]}")
  read -r c _ c_cpu < <(measure "$clients" "${credit_rpc[@]}")
  read -r f _ f_cpu < <(measure "$clients" "${credit_floor[@]}")
  curve_rows+=("| ${clients} | ${b} | ${b_cpu} | $(ratio "$c" "$b") | ${c_cpu} | $(ratio "$f" "$b") | ${f_cpu} |")
done
# The goal's figures (8 clients: baseline, RPC, floor) vary by several percent from one 10 s
# run to the next on a small machine, so they are measured in alternating rounds and the
# median of each is reported, with every round's ratio.
rounds=${BENCH_ROUNDS:-3}
base8_runs=() credit8_runs=() floor8_runs=() round_ratios=()
for _ in $(seq 1 "$rounds"); do
  base8_runs+=("$(measure 8 "${baseline[@]}")")
  credit8_runs+=("$(measure 8 "${credit_rpc[@]}")")
  floor8_runs+=("$(measure 8 "${credit_floor[@]}")")
  round_ratios+=("$(ratio "${credit8_runs[-1]%% *}" "${base8_runs[-1]%% *}")")
done
# median_of COLUMN RUNS...: the median of one column (1 = per second, 2 = WAL, 3 = CPU) of measure's runs.
median_of() {
  local column=$1
  shift
  printf '%s\n' "$@" | cut -d' ' -f"$column" | median
}
base8=$(median_of 1 "${base8_runs[@]}") base8_wal=$(median_of 2 "${base8_runs[@]}") base8_cpu=$(median_of 3 "${base8_runs[@]}")
credit8=$(median_of 1 "${credit8_runs[@]}") credit8_wal=$(median_of 2 "${credit8_runs[@]}") credit8_cpu=$(median_of 3 "${credit8_runs[@]}")
floor8=$(median_of 1 "${floor8_runs[@]}") floor8_wal=$(median_of 2 "${floor8_runs[@]}") floor8_cpu=$(median_of 3 "${floor8_runs[@]}")
read -r hot8 hot8_wal hot8_cpu < <(measure 8 -f bench/spend-hot.pgbench)
read -r spread8 spread8_wal spread8_cpu < <(measure 8 -f bench/spend-spread.pgbench)

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
\`simple-update\` at the same client count, so they compare across machines. The 8-client
baseline, RPC and floor are the medians of ${rounds} alternating rounds (RPC ratio per round:
${round_ratios[*]}). All runs fall between two checkpoints (one explicit checkpoint and a warm-up
of the baseline and the RPC come first, so that few pages are first touched, and logged whole,
during a measured run; with runs much shorter than 10 s more are); PostgreSQL's other settings
are its defaults (\`shared_buffers\` 128MB).

Machine: $(nproc) cores (${cpu:-unknown CPU}), ${memory} memory; ${pg_version}; ${deno_version}.

| what | clients | per second | ratio to simple-update | WAL per transaction, bytes | machine CPU per transaction, us |
| --- | --- | --- | --- | --- | --- |
| baseline: pgbench simple-update | 1 | ${base1} | 1.00 | ${base1_wal} | ${base1_cpu} |
| baseline: pgbench simple-update | 8 | ${base8} | 1.00 | ${base8_wal} | ${base8_cpu} |
| crediting RPC \`handle_stripe_event\` (new paid session) | 1 | ${credit1} | $(ratio "$credit1" "$base1") | ${credit1_wal} | ${credit1_cpu} |
| crediting RPC \`handle_stripe_event\` (new paid session) | 8 | ${credit8} | $(ratio "$credit8" "$base8") | ${credit8_wal} | ${credit8_cpu} |
| floor: the writes of one credit and nothing else | 8 | ${floor8} | $(ratio "$floor8" "$base8") | ${floor8_wal} | ${floor8_cpu} |
| \`spend_credits\`, one hot user | 8 | ${hot8} | $(ratio "$hot8" "$base8") | ${hot8_wal} | ${hot8_cpu} |
| \`spend_credits\`, 10,000 users | 8 | ${spread8} | $(ratio "$spread8" "$base8") | ${spread8_wal} | ${spread8_cpu} |
| webhook end to end (HTTP, signature, RPC) | 8 | ${webhook8} | $(ratio "$webhook8" "$base8") | | |

Goal from issue 2: the crediting RPC at 8 clients at least 0.7 of simple-update; this run:
$(ratio "$credit8" "$base8"), goal $(awk -v a="$credit8" -v b="$base8" 'BEGIN { print (a / b >= 0.7) ? "met" : "not met" }'). The RPC runs at $(ratio "$credit8" "$floor8") of the floor, and the end-to-end webhook at
$(ratio "$webhook8" "$credit8") of the RPC alone (${webhook_errors} non-200 answers).

From 1 to 8 clients (2 and 4 measured once each; "CPU" is the machine's CPU time per
transaction in us, PostgreSQL, pgbench and the kernel together):

| clients | simple-update per second | its CPU | RPC ratio | RPC CPU | floor ratio | floor CPU |
| --- | --- | --- | --- | --- | --- | --- |
| 1 | ${base1} | ${base1_cpu} | $(ratio "$credit1" "$base1") | ${credit1_cpu} | | |
$(printf '%s\n' "${curve_rows[@]}")
| 8 | ${base8} | ${base8_cpu} | $(ratio "$credit8" "$base8") | ${credit8_cpu} | $(ratio "$floor8" "$base8") | ${floor8_cpu} |

Until the cores are saturated, a transaction mostly waits for its commit's flush, and the RPC
keeps close to the baseline. Once all $(nproc) cores are busy, each figure is the cores divided by
its CPU time per transaction, so the ratio falls towards the ratio of CPU times: at 8 clients
$(ratio "$base8_cpu" "$credit8_cpu") for the RPC and $(ratio "$base8_cpu" "$floor8_cpu") for the floor. Meeting 0.7 there allows at most
$(awk -v b="$base8_cpu" 'BEGIN { printf "%.0f", b / 0.7 }') us of machine CPU per credit: the floor takes ${floor8_cpu}, which leaves $(awk -v b="$base8_cpu" -v f="$floor8_cpu" 'BEGIN { printf "%.0f", b / 0.7 - f }') us
for everything exactly-once adds to the writes; it adds $(awk -v c="$credit8_cpu" -v f="$floor8_cpu" 'BEGIN { printf "%.0f", c - f }') us in this run.

Reading the figures. The floor (\`bench.credit_writes_only\` in \`bench/setup.sql\`) makes only the
writes one credit needs, from the same payload: the inbox row, the recharge and the ledger entry
(thirteen index entries between them, three foreign-key checks, fourteen CHECK constraints) and the
balance update, and nothing else. \`simple-update\` updates three rows and appends one unindexed
history row; the WAL column shows how much more a credit has to flush at each commit. So the
distance from the floor to 1.00 is the schema's cost, which no implementation of it avoids, and
the distance from the RPC to the floor is the price of exactly-once: the event-id lookup that
turns a repeat into a duplicate, the payment's advisory lock, the buyer check, the deferred-event
lookup and the sub-transaction that keeps a failure on the inbox row (an event for a recharge
that exists already also locks it, locks the balance row and looks up the entry's idempotency
key; a new recharge needs none of these, see below). No single large cost is left in that part;
each remaining statement is worth a few percent.

Where a credit's time goes (perf and pg_stat_statements with track = all, 2026-11-26): the three
inserts are two thirds of the RPC's execution time (the recharge with its buyer check, five
index entries and six CHECK constraints about 120 us; the ledger entry, six index entries, about
90 us; the inbox row about 40 us, 1 client), then commit and WAL flush (about 11% of the CPU at 8
clients), executor start-up of each statement (about 9%), and about ten PL/pgSQL calls, each
with the \`SET search_path\` the Supabase advisor requires (about 2 us per call). At 1 client the
RPC is bound by the commit's flush like the baseline (ratio $(ratio "$credit1" "$base1")); at 8 clients on $(nproc) cores it is
bound by CPU (table above). Removed so far, each measured on the same machine: SQL-language functions with
\`SET search_path\` parsed and planned on every call (28% of the CPU) and a new event's inbox row
written twice (migration 20261126007000; 0.37 to 0.55, with the event sent as JSON text as the
webhook sends it); a recharge inserted by the same transaction locked, re-read, its key looked up
and the balance row locked apart from its update (20261126008000), and CHECK value lists stored
as per-value nodes that PostgreSQL 15 re-reads and folds on every write (20261126008100, about
3% of the floor): together 9% less backend CPU per credit (576 to 523 us at 1 client, best of 3,
two fresh clusters each), and at 8 clients 3214 to 3474 credits per second in back-to-back
\`npm run bench\` runs of the code before and after (ratio 0.50 and 0.59 in those single runs,
whose baselines differed by 8%; hence the rounds above). The rest of the gap to 0.7 is the floor
itself (its CHECK constraints alone are about 13% of it on PostgreSQL 15) plus the checks
listed above. What each check costs, measured by removing it alone (backend CPU per credit at 1
client, best of 3, about 575 us with all of them; each figure within about 10 us): the buyer and
credits validation 28 us, the deferred-event lookup 27 us, the sub-transaction 13 us, the
recharge's ON CONFLICT 12 us, the inbox's ON CONFLICT 7 us, \`SET search_path\` on the inner
functions 7 us, the payment's advisory lock 5 us. Dropping all of them (99 us together)
would bring the RPC to about $(awk -v b="$base8_cpu" -v c="$credit8_cpu" 'BEGIN { printf "%.2f", b / (c - 99) }') by this run's CPU times, still short of 0.7: the goal cannot
be met by the exactly-once path alone while the floor is at $(ratio "$floor8" "$base8"). The other way round, with every check kept: the whole path of a
new paid session written as one function (an experiment, not landed, since it would repeat what
the shared functions hold) took 477 us of backend CPU per credit against 565 for the RPC and 405
for the floor (1 client, best of 3), and ran at 0.62 to 0.63 of simple-update at 8 clients in
three alternating rounds on a fresh cluster, where the RPC ran at 0.50 to 0.56: the calls
between the functions cost about 15%, and even without them the goal is not met. Nor is the
gap the cache: with \`shared_buffers\` at 2GB instead of 128MB, the baseline ran faster (6043
per second at 8 clients) and the RPC did not (3151; ratio 0.52, same day, same machine).

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
