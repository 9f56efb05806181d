#!/usr/bin/env bash
# Test: fix_all runs while the same orphaned recharge's checkout.session.completed is
# delivered, in both orders (repair holds the row / webhook holds the row): credited once.
#
# Needs two real connections, so it is a bash + psql script, not a pgTAP file. It commits
# its own rows (users tagged t-concurrency), removes them at the end, and prints TAP:
#   SUPABASE_DB_URL=postgresql://postgres:postgres@127.0.0.1:54322/postgres \
#     bash supabase/tests/concurrency/fix-all-vs-webhook.sh
# Run it against a throwaway database (fix_all also repairs whatever else is broken there),
# with nothing else writing to the same rows.
set -euo pipefail

db_url=${SUPABASE_DB_URL:-postgresql://postgres:postgres@127.0.0.1:54322/postgres}
tmp=$(mktemp -d)
run_id=$$
declare -A session_pid session_fd
test_number=0
failures=0

q() { psql -X -q -v ON_ERROR_STOP=1 -At "$db_url" -c "$1"; }

cleanup() {
  local name
  for name in "${!session_fd[@]}"; do
    exec {session_fd[$name]}>&- 2>/dev/null || true
  done
  for name in "${!session_pid[@]}"; do
    kill "${session_pid[$name]}" 2>/dev/null || true
  done
  q "delete from public.credit_transaction where user_id in (select id from auth.users where email like 't-concurrency-$run_id-%');
     delete from public.user_credit_balance where user_id in (select id from auth.users where email like 't-concurrency-$run_id-%');
     delete from public.credit_recharge where user_id in (select id from auth.users where email like 't-concurrency-$run_id-%');
     delete from credit_private.stripe_webhook_event where event_id like 'evt_t_concurrency_${run_id}_%';
     delete from auth.users where email like 't-concurrency-$run_id-%';" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# A psql session kept open on a fifo, so a transaction can stay open between two steps.
open_session() {
  local name=$1 fd
  mkfifo "$tmp/$name.in"
  PGAPPNAME="t-concurrency-$run_id-$name" psql -X -q -v ON_ERROR_STOP=1 -At "$db_url" \
    <"$tmp/$name.in" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  session_pid[$name]=$!
  exec {fd}>"$tmp/$name.in"
  session_fd[$name]=$fd
}
send() { printf '%s\n' "$2" >&"${session_fd[$1]}"; }
close_session() {
  exec {session_fd[$1]}>&-
  unset "session_fd[$1]"
  wait "${session_pid[$1]}"
  unset "session_pid[$1]"
}

# wait_for NAME STATE: until the session is in STATE ('idle in transaction', or 'waiting'
# for a lock), 20 s at most.
wait_for() {
  local app="t-concurrency-$run_id-$1" want=$2 state i
  for i in $(seq 1 200); do
    state=$(q "select coalesce(max(case when wait_event_type = 'Lock' then 'waiting' else state end), 'gone')
               from pg_stat_activity where application_name = '$app'")
    [ "$state" = "$want" ] && return 0
    sleep 0.1
  done
  echo "# $1 is '$state', not '$want'" >&2
  return 1
}

check() {
  test_number=$((test_number + 1))
  if [ "$2" = "$3" ]; then
    echo "ok $test_number - $1"
  else
    failures=$((failures + 1))
    echo "not ok $test_number - $1"
    echo "#   have: $2"
    echo "#   want: $3"
  fi
}

# An orphaned recharge: credited (completed) before the package knew it, no ledger entry,
# no inbox row; its Checkout Session's completed event is then delivered for the first time.
make_orphan() {
  q "with u as (insert into auth.users (email) values ('t-concurrency-$run_id-$1@test.local') returning id)
     insert into public.credit_recharge (user_id, credits, amount_cents, status, completed_at, stripe_checkout_session_id)
     select u.id, $2, $2, 'completed', now(), 'cs_t_concurrency_${run_id}_$1' from u
     returning id || ' ' || user_id"
}
event_sql() {
  echo "select public.handle_stripe_event(jsonb_build_object(
    'id', 'evt_t_concurrency_${run_id}_$1', 'object', 'event', 'type', 'checkout.session.completed', 'created', 1700000000,
    'data', jsonb_build_object('object', jsonb_build_object('id', 'cs_t_concurrency_${run_id}_$1', 'object', 'checkout.session',
      'client_reference_id', '$2', 'payment_status', 'paid', 'amount_total', $3, 'currency', 'usd',
      'metadata', jsonb_build_object('credits', '$3'))))) ->> 'status';"
}
credited() {
  q "select count(*) || ' entry, balance ' || coalesce((select b.balance || '/' || b.total_recharged
       from public.user_credit_balance b where b.user_id = '$2'), 'none')
     from public.credit_transaction t where t.recharge_id = '$1' and t.type = 'recharge'"
}
fix_all_sql="select public.fix_all_credits(dry_run => false, actor => 't-concurrency', reason => 'concurrency test')
  #> '{steps,2,changes}' @? '\$[*] ? (@.target_id == \"RID\")';"

echo "1..6"

# 1. The repair holds the recharge row; the delivery arrives and waits for it.
read -r rid uid <<<"$(make_orphan a 300)"
open_session repair
send repair "begin;"
send repair "${fix_all_sql//RID/$rid}"
wait_for repair "idle in transaction"
PGAPPNAME="t-concurrency-$run_id-delivery" psql -X -q -v ON_ERROR_STOP=1 -At "$db_url" \
  -c "$(event_sql a "$uid" 300)" >"$tmp/delivery.out" 2>&1 &
delivery_pid=$!
waiting=$(wait_for delivery "waiting" && echo yes || echo no)
check "repair first: the delivery waits for the repair's row lock" "$waiting" "yes"
send repair "commit;"
close_session repair
wait "$delivery_pid"
check "repair first: the repair back-filled the recharge" "$(head -n 1 "$tmp/repair.out")" "t"
check "repair first: the delivery is processed, and credits it once" \
  "$(cat "$tmp/delivery.out") / $(credited "$rid" "$uid")" "processed / 1 entry, balance 300/300"

# 2. The delivery holds the recharge row; the repair arrives and waits for it.
read -r rid uid <<<"$(make_orphan b 200)"
open_session webhook
send webhook "begin;"
send webhook "$(event_sql b "$uid" 200)"
wait_for webhook "idle in transaction"
PGAPPNAME="t-concurrency-$run_id-late-repair" psql -X -q -v ON_ERROR_STOP=1 -At "$db_url" \
  -c "${fix_all_sql//RID/$rid}" >"$tmp/late-repair.out" 2>&1 &
repair_pid=$!
waiting=$(wait_for late-repair "waiting" && echo yes || echo no)
check "webhook first: the repair waits for the delivery's row lock" "$waiting" "yes"
send webhook "commit;"
close_session webhook
wait "$repair_pid"
check "webhook first: the repair finds the recharge credited and leaves it" "$(cat "$tmp/late-repair.out")" "f"
check "webhook first: credited once" "$(head -n 1 "$tmp/webhook.out") / $(credited "$rid" "$uid")" \
  "processed / 1 entry, balance 200/200"

[ "$failures" -eq 0 ]
