#!/usr/bin/env bash
# Part of `npm run bench` (issue 3's scale figures): the full diagnosis and the 15-minute
# monitor's incremental check on a small and on a large generated ledger. Prints a Markdown
# section on stdout. BENCH_SCALE_USERS sets the large size (default 1,000,000 users, which is
# 10,000,000 ledger entries and 2,000,000 recharges); the small size is 10,000 users (100,000
# entries). BENCH_SCALE_ROUNDS (default 15) sets how many checks are timed at each size.
#
# The two sizes live in two clusters with the same settings, started side by side, and their
# checks alternate (small then large, large then small), so that load from elsewhere on the
# machine falls on both alike. Before each check both get the same new traffic: one paid
# Checkout Session for each of 200 generated users that had no activity yet (same user
# numbers, same ids at both sizes; each such user has exactly the 10 generated entries). The
# bench sets settings.incremental_overlap to 0, so a check's window holds exactly the traffic
# since the previous check: with the default 5 minutes, each check would also look again at
# every earlier round of the last 5 minutes (and, at the large size, at the small size's
# rounds when generation takes less than 5 minutes), and the two sizes would not examine the
# same rows. The report shows how many changed rows each check examined at each size.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

large_users=${BENCH_SCALE_USERS:-1000000}
small_users=10000
rounds=${BENCH_SCALE_ROUNDS:-15}
events=200
large_port=${BENCH_SCALE_DB_PORT:-56422}
small_port=${BENCH_SCALE_SMALL_DB_PORT:-$((large_port + 1))}
[ $(((rounds + 1) * events)) -le "$small_users" ] || die "BENCH_SCALE_ROUNDS too large for $small_users users"
large_dir=$(mktemp -d /tmp/credits-scale.XXXXXX)
small_dir=$(mktemp -d /tmp/credits-scale-small.XXXXXX)
trap 'db_stop "$large_dir" immediate; db_stop "$small_dir" immediate; rm -rf "$large_dir" "$small_dir"' EXIT

# cluster DIR PORT: a migrated database with the scale settings (the same for both sizes).
cluster() {
  local dir=$1 port=$2
  db_init "$dir"
  cat >>"$dir/data/postgresql.conf" <<CONF
shared_buffers = '2GB'
maintenance_work_mem = '1GB'
work_mem = '64MB'
max_wal_size = '8GB'
shared_preload_libraries = 'pg_cron,pg_stat_statements'
CONF
  db_start "$dir" "$port"
  db_bootstrap "$port"
  db_migrate "$port" 2>/dev/null
  psql_as supabase_admin "$port" -c "create extension if not exists pg_stat_statements with schema extensions" \
    -c "update credit_private.settings set incremental_overlap = interval '0'" >/dev/null
}

# generate PORT FIRST LAST: users FIRST..LAST with their history, in chunks of 100,000 users.
generate() {
  local port=$1 first=$2 last=$3 to
  while [ "$first" -le "$last" ]; do
    to=$((first + 99999))
    [ "$to" -gt "$last" ] && to=$last
    psql_as supabase_admin "$port" -v first_user="$first" -v last_user="$to" -f bench/scale-generate.sql >/dev/null
    first=$((to + 1))
  done
  psql_as supabase_admin "$port" -c "vacuum analyze" >/dev/null
}

# ms PORT SQL: wall time of one statement in milliseconds, as psql's \timing reports it.
ms() {
  psql_as postgres "$1" -c '\timing on' -c "$2" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1
}

# round PORT FIRST: new traffic for users FIRST..FIRST+199, then one monitor check, in a new
# connection as pg_cron runs it. Prints "ms users recharge_entries recharges buffers faults":
# the check's wall time, the changed rows it examined (from its report), the shared buffers it
# touched (pg_stat_statements, hit or read) and the page faults its backend took meanwhile
# (/proc: each shared-buffer page a backend touches for the first time costs one).
round() {
  local port=$1 first=$2 out
  psql_as postgres "$port" -v first_user="$first" -v last_user=$((first + events - 1)) -f bench/scale-activity.sql >/dev/null
  psql_as supabase_admin "$port" -c "select extensions.pg_stat_statements_reset()" >/dev/null
  out=$(psql_as postgres "$port" -At -F ' ' <<'SQL'
select pg_backend_pid() as backend_pid \gset
\setenv BACKEND_PID :backend_pid
\! awk '{ print "faults", $10 }' /proc/$BACKEND_PID/stat
\timing on
select c ->> 'users', c ->> 'recharge_entries', c ->> 'recharges'
from (select public.diagnose_credits_incremental('bench') -> 'changed' as c) s;
\timing off
\! awk '{ print "faults", $10 }' /proc/$BACKEND_PID/stat
SQL
  )
  printf '%s %s %s %s\n' "$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<<"$out")" "$(grep -E '^[0-9]+ [0-9]+ [0-9]+$' <<<"$out")" \
    "$(psql_as supabase_admin "$port" -At -c "select sum(shared_blks_hit + shared_blks_read)
       from extensions.pg_stat_statements where query like '%diagnose_credits_incremental%'")" \
    "$(awk '/^faults/ { f[++n] = $2 } END { print f[2] - f[1] }' <<<"$out")"
}

# median COLUMN FILE: median of one column (odd count), and its range.
median() {
  awk -v c="$1" '{ print $c }' "$2" | sort -n | awk '{ v[NR] = $1 } END { printf "%s (%s to %s)", v[int((NR + 1) / 2)], v[1], v[NR] }'
}
median_only() { awk -v c="$1" '{ print $c }' "$2" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
entries() { psql_as postgres "$1" -At -c "select count(*) from public.credit_transaction"; }

log "scale: two clusters, generating $small_users and $large_users users (this takes minutes)"
cluster "$small_dir" "$small_port"
cluster "$large_dir" "$large_port"
generate "$small_port" 1 "$small_users"
generate "$large_port" 1 "$large_users"
small_entries=$(entries "$small_port")
large_entries=$(entries "$large_port")
large_recharges=$(psql_as postgres "$large_port" -At -c "select count(*) from public.credit_recharge")

# A first check creates each watermark (nothing generated is recent), then one untimed round
# with users after the timed ones.
for port in "$small_port" "$large_port"; do
  ms "$port" "select public.diagnose_credits_incremental('bench') is not null" >/dev/null
  round "$port" $((rounds * events + 1)) >/dev/null
done

log "scale: $rounds incremental checks at each size, alternating"
small_runs="$small_dir/runs" large_runs="$large_dir/runs"
: >"$small_runs"
: >"$large_runs"
for i in $(seq 1 "$rounds"); do
  first=$(((i - 1) * events + 1))
  if [ $((i % 2)) -eq 1 ]; then
    round "$small_port" "$first" >>"$small_runs"
    round "$large_port" "$first" >>"$large_runs"
  else
    round "$large_port" "$first" >>"$large_runs"
    round "$small_port" "$first" >>"$small_runs"
  fi
done
# changed rows examined, as "users / recharge entries / recharges", and whether every check
# examined the same at both sizes.
examined() { awk '{ print $2 " / " $3 " / " $4 }' "$1" | sort | uniq -c | awk '{ $1 = $1 "x"; print }' | paste -sd ';' -; }
if paste -d ' ' "$small_runs" "$large_runs" | awk '$2 != $8 || $3 != $9 || $4 != $10 { bad = 1 } END { exit bad }'; then
  same_work="yes, in every round"
else
  same_work="**no**: the sizes examined different rows in some rounds (see the counts)"
fi
small_ms=$(median_only 1 "$small_runs")
large_ms=$(median_only 1 "$large_runs")
small_buffers=$(median_only 5 "$small_runs")
large_buffers=$(median_only 5 "$large_runs")
small_faults=$(median_only 6 "$small_runs")
large_faults=$(median_only 6 "$large_runs")

log "scale: full diagnosis, 3 runs at each size"
full_ms() {
  local i
  for i in 1 2 3; do ms "$1" "select public.diagnose_credits() is not null"; done | sort -n | sed -n 2p
}
small_full=$(full_ms "$small_port")
large_full=$(full_ms "$large_port")

# The incremental check's own statements as they ran on the large ledger (auto_explain, actual
# rows and buffers, no timing), after one more round of the same traffic: the statements of
# the function itself, not those of the functions it calls.
psql_as postgres "$large_port" -v first_user=$((rounds * events + events + 1)) \
  -v last_user=$((rounds * events + 2 * events)) -f bench/scale-activity.sql >/dev/null
log_offset=$(stat -c %s "$large_dir/postgres.log")
psql_as supabase_admin "$large_port" -c "load 'auto_explain'" -c "set auto_explain.log_min_duration = 0" \
  -c "set auto_explain.log_analyze = on" -c "set auto_explain.log_timing = off" -c "set auto_explain.log_buffers = on" \
  -c "set auto_explain.log_nested_statements = on" \
  -c "select public.diagnose_credits_incremental('bench') is not null" >/dev/null
incremental_plans=$(
  tail -c +$((log_offset + 1)) "$large_dir/postgres.log" | awk '
    function flush() {
      if (plan != "" && functions == 1 && own) print plan
      plan = ""; functions = 0; own = 0; in_plan = 0; in_context = 0
    }
    /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] .* LOG:  duration: .* plan:$/ { flush(); in_plan = 1; started = 0; next }
    /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] .* CONTEXT:  / {
      in_context = 1; in_plan = 0
      if ($0 ~ / CONTEXT:  (PL\/pgSQL|SQL) function /) functions++
      next
    }
    /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] / { flush(); next }
    in_plan {
      line = substr($0, 2)
      if (line ~ /\(actual rows=/) started = 1
      if (started) plan = plan line "\n"
      next
    }
    in_context && /^\t(PL\/pgSQL|SQL) function / {
      functions++
      if ($0 ~ /PL\/pgSQL function public\.diagnose_credits_incremental\(/ && $0 ~ / at SQL statement$/) own = 1
    }
    END { flush() }' | sed -e 's/  (cost=[^)]*)//' || true
)

full_plans=$(
  for view in orphaned_recharges dangling_recharge_entries balance_mismatches failed_webhooks stuck_recharges \
    negative_balances; do
    echo "-- credit_private.$view"
    psql_as postgres "$large_port" -At -c "explain (costs off) select * from credit_private.$view"
    echo
  done
)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

cat <<REPORT

## Diagnosis at scale (issue 3)

Generated ledgers (\`bench/scale-generate.sql\`): ${large_users} users, ${large_entries} ledger entries,
${large_recharges} recharges for the large size, ${small_users} users and ${small_entries} entries for the small
one; every generated user has 2 recharges and 10 ledger entries at both sizes. Each size has its
own cluster with the same settings (\`shared_buffers\` 2GB); their checks alternate, ${rounds} at each size.
Before each check, both get the same new traffic (\`bench/scale-activity.sql\`): one paid Checkout
Session for each of ${events} users without earlier activity, the same users and ids at both sizes.
Each check runs in a new connection, as pg_cron runs the monitor. The bench sets
\`incremental_overlap\` to 0 so that a check's window holds exactly the traffic since the previous
check.

| check | ${small_entries} entries | ${large_entries} entries | large / small |
| --- | --- | --- | --- |
| incremental check (\`diagnose_credits_incremental\`), ms, median (range) of ${rounds} | $(median 1 "$small_runs") | $(median 1 "$large_runs") | $(ratio "$large_ms" "$small_ms") |
| changed rows it examined: users / recharge entries / recharges (checks) | $(examined "$small_runs") | $(examined "$large_runs") | same: ${same_work} |
| shared buffers it touched (hit or read), median | ${small_buffers} | ${large_buffers} | $(ratio "$large_buffers" "$small_buffers") |
| page faults its backend took, median | ${small_faults} | ${large_faults} | $(ratio "$large_faults" "$small_faults") |
| full diagnosis (\`diagnose_credits\`), ms, median of 3 | ${small_full} | ${large_full} | $(ratio "$large_full" "$small_full") |

**The incremental check.** It looks only at what changed since its watermark, found by index,
so its cost follows the traffic since the last run, not the size of the tables. The changed
rows come from two range scans (\`created_at\`, \`updated_at\` from the watermark) over recent
rows, which sit together at the end of the table and of those indexes; orphaned and dangling
recharges are settled from those rows; each changed user's balance is summed from that user's
entries (\`credit_transaction_user_id_created_at_idx\`; a generated user has 10 entries at both
sizes, 11 after its new payment) and compared with its balance row (\`user_credit_balance_pkey\`);
only what the changed rows cannot settle, and the findings, are looked up again by primary key.
Its statements as they ran on the large ledger (actual rows and buffers; the lookups marked
"never executed" run only for rows the changed rows do not settle):

\`\`\`
${incremental_plans}
\`\`\`

Why the first measurement found it 3.35 times dearer at 10M entries (47 against 157 ms), and
what changed (measured on 2026-11-26, on 2 cores shared with other work):

- **Unequal work.** Each check looks back \`incremental_overlap\` (5 minutes) before its watermark
  and the rounds ran seconds apart, so the k-th check of a size examined all k rounds (200 to
  1,000 changed recharges); at the large size, generation took under 5 minutes, so its checks
  also examined the small size's 1,000 sessions (1,200 to 2,000). The medians compared 600
  changed recharges with 1,600. Re-run with the old script, printing what each check examined:
  39.6 ms at 600 against 131.2 ms at 1,600. The bench now gives both sizes the same traffic,
  sets the overlap to 0 and shows what each check examined (row 2 of the table).
- **Fresh backends and scattered pages.** With the same 200 changed rows at both sizes, the check
  as of migration \`20261126002800\` still cost more at 10M entries: 94 against 150 ms (1.59) with
  this bench under heavy load from other work, 31.3 against 39.3 ms (1.26) on a quieter machine
  (200,000 against 10M entries, 20 alternating rounds), while touching only 10% more buffers
  (13,442 against 14,828). Its backend took 61% more page faults (2,751 against 4,434): a check
  runs in a new backend, as pg_cron runs it, and each shared-buffer page a backend touches for the
  first time costs a page fault and cache misses. On a small ledger the lookups of 200 changed
  rows share index and heap pages; on a large one each lands on pages of its own. The lookups of
  \`orphaned_recharges\` alone took 775 page faults and 6 ms at 10M entries against 244 and 3 ms
  at 200,000, and 1.5 against 1.2 ms when repeated in the same backend. Most of those lookups read
  again rows the range scans had just read: migration
  \`20261126007500_incremental_check_reads_changed_rows_once\` settles \`orphaned_recharges\` and
  \`dangling_recharge_entries\` from the changed rows themselves and looks up only what they
  cannot settle (same report: \`supabase/tests/database/131-*\` compares it with the views row for
  row; on scratch ledgers with up to 27,800 changed rows, and with hundreds of edits of every
  kind, the old and new reports were identical). With it, the table above.
- **Not causes:** plans (the same index plans at both sizes, no sequential scan, no wide range;
  see above), JIT (off for the function), statistics (analyzed after generation), reads from
  disk (a few dozen buffers come from the OS cache per check at 10M entries).

What still grows a little with the ledger is inherent to reading each changed user's entries
and balance row: one more B-tree level and index pages that 200 users no longer share (the
buffers and page-fault rows of the table).

**The full diagnosis** reads every row once by design (one hash aggregate over the ledger for
the balances, hash joins for the rest); the failed-webhook and stuck-recharge categories use
their partial indexes. Plans of its categories on the large ledger:

\`\`\`
${full_plans}
\`\`\`
REPORT
