#!/usr/bin/env bash
# Part of `npm run bench` (issue 3's scale figures): the full diagnosis and the 15-minute
# monitor's incremental check on a small and on a large generated ledger. Prints a Markdown
# section on stdout. BENCH_SCALE_USERS sets the large size (default 1,000,000 users, which is
# 10,000,000 ledger entries and 2,000,000 recharges); the small size is 10,000 users.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

large_users=${BENCH_SCALE_USERS:-1000000}
small_users=10000
db_port=${BENCH_SCALE_DB_PORT:-56422}
dir=$(mktemp -d /tmp/credits-scale.XXXXXX)
trap 'db_stop "$dir" immediate; rm -rf "$dir"' EXIT

db_init "$dir"
cat >>"$dir/data/postgresql.conf" <<CONF
shared_buffers = '2GB'
maintenance_work_mem = '1GB'
work_mem = '64MB'
max_wal_size = '8GB'
CONF
db_start "$dir" "$db_port"
db_bootstrap "$db_port"
db_migrate "$db_port" 2>/dev/null

# generate FIRST LAST: users FIRST..LAST with their history, in chunks of 100,000 users.
generate() {
  local first=$1 last=$2 to
  while [ "$first" -le "$last" ]; do
    to=$((first + 99999))
    [ "$to" -gt "$last" ] && to=$last
    psql_as supabase_admin "$db_port" -v first_user="$first" -v last_user="$to" -f bench/scale-generate.sql >/dev/null
    first=$((to + 1))
  done
  psql_as supabase_admin "$db_port" -c "vacuum analyze" >/dev/null
}

# ms SQL: wall time of one statement in milliseconds, as psql's \timing reports it.
ms() {
  psql_as postgres "$db_port" -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1
}

# incremental_ms: median of 5 monitor checks, each after 200 new paid sessions.
incremental_ms() {
  local i times=()
  for i in 1 2 3 4 5; do
    psql_as postgres "$db_port" -v events=200 -f bench/scale-activity.sql >/dev/null
    times+=("$(ms "select public.diagnose_credits_incremental('bench') is not null")")
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 3p
}

entries() { psql_as postgres "$db_port" -At -c "select count(*) from public.credit_transaction"; }

log "scale: generating $small_users users"
generate 1 "$small_users"
ms "select public.diagnose_credits_incremental('bench') is not null" >/dev/null
small_entries=$(entries)
small_incremental=$(incremental_ms)
small_full=$(ms "select public.diagnose_credits() is not null")

log "scale: generating up to $large_users users (this takes minutes)"
generate $((small_users + 1)) "$large_users"
large_entries=$(entries)
large_recharges=$(psql_as postgres "$db_port" -At -c "select count(*) from public.credit_recharge")
large_incremental=$(incremental_ms)
large_full=$(ms "select public.diagnose_credits() is not null")

plans=$(
  for view in orphaned_recharges dangling_recharge_entries balance_mismatches failed_webhooks stuck_recharges \
    negative_balances; do
    echo "-- credit_private.$view"
    psql_as postgres "$db_port" -At -c "explain (costs off) select * from credit_private.$view"
    echo
  done
)

cat <<REPORT

## Diagnosis at scale (issue 3)

Generated ledger: ${large_users} users, ${large_entries} ledger entries, ${large_recharges} recharges
(\`bench/scale-generate.sql\`), against ${small_entries} entries for the small size. The monitor's
incremental check is timed after 200 new paid sessions each time (median of 5).

| check | ${small_entries} entries | ${large_entries} entries | large / small |
| --- | --- | --- | --- |
| incremental check (\`diagnose_credits_incremental\`), ms | ${small_incremental} | ${large_incremental} | $(awk -v a="$large_incremental" -v b="$small_incremental" 'BEGIN { printf "%.2f", a / b }') |
| full diagnosis (\`diagnose_credits\`), ms | ${small_full} | ${large_full} | $(awk -v a="$large_full" -v b="$small_full" 'BEGIN { printf "%.2f", a / b }') |

The incremental check reads only rows changed since its watermark, by index: the last column
shows how flat it stays as the ledger grows (issue 3 asks for the same cost at both sizes). The
full diagnosis reads everything once by design; plans of its categories on the large ledger:

\`\`\`
${plans}
\`\`\`
REPORT
