#!/usr/bin/env bash
# Test: the guide's psql entry points on a real inconsistency. diagnose_payment_issues.sql
# names the broken rows and changes nothing; fix_payment_credits_manual.sql repairs them and,
# run again, reports nothing to do. Prints TAP. Commits its own rows, so run it against a
# throwaway database (npm test does):
#   SUPABASE_DB_URL=postgresql://postgres:postgres@127.0.0.1:54322/postgres bash supabase/tests/scripts/psql-entry-points.sh
set -uo pipefail

db_url=${SUPABASE_DB_URL:?SUPABASE_DB_URL is required}
scripts=$(cd "$(dirname "$0")/../../scripts" && pwd)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
n=0
failures=0

q() { psql -X -q -v ON_ERROR_STOP=1 -At "$db_url" -c "$1"; }
check() {
  n=$((n + 1))
  if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; failures=$((failures + 1)); fi
}
state() {
  q "select (select count(*) from public.credit_transaction) || '/' || (select count(*) from credit_private.repair_log)
     || '/' || (select coalesce(sum(balance), 0) from public.user_credit_balance)"
}

echo "1..7"
user_id=$(q "insert into auth.users (email) values ('psql-entry-' || gen_random_uuid() || '@test.local') returning id")
q "select public.handle_stripe_event(jsonb_build_object('id', 'evt_psql_$user_id', 'type', 'checkout.session.completed',
     'created', 1764115200, 'data', jsonb_build_object('object', jsonb_build_object('id', 'cs_psql_$user_id',
     'client_reference_id', '$user_id', 'payment_status', 'paid', 'payment_intent', 'pi_psql_$user_id',
     'amount_total', 500, 'currency', 'usd', 'metadata', jsonb_build_object('credits', '500')))))" >/dev/null
recharge_id=$(q "select id from public.credit_recharge where stripe_checkout_session_id = 'cs_psql_$user_id'")
# The guide's failure: the payment is completed but its ledger entry is gone.
q "delete from public.credit_transaction where recharge_id = '$recharge_id'"

before=$(state)
psql -X -v ON_ERROR_STOP=1 "$db_url" -f "$scripts/diagnose_payment_issues.sql" >"$out" 2>&1
check "diagnose_payment_issues.sql exits 0" "[ $? -eq 0 ]"
check "the diagnosis names the orphaned recharge" "grep -q '$recharge_id' '$out'"
check "the diagnosis changes nothing" "[ '$(state)' = '$before' ]"

psql -X -v ON_ERROR_STOP=1 "$db_url" -f "$scripts/fix_payment_credits_manual.sql" >"$out" 2>&1
check "fix_payment_credits_manual.sql exits 0" "[ $? -eq 0 ]"
check "the repair restores the recharge entry and the balance" \
  "[ \"\$(q \"select count(*) || ':' || (select balance from public.user_credit_balance where user_id = '$user_id')
     from public.credit_transaction where recharge_id = '$recharge_id' and type = 'recharge'\")\" = '1:500' ]"

psql -X -v ON_ERROR_STOP=1 "$db_url" -f "$scripts/fix_payment_credits_manual.sql" >"$out" 2>&1
check "a second repair exits 0" "[ $? -eq 0 ]"
check "a second repair reports nothing to do" "grep -q 'nothing to do' '$out'"

[ $failures -eq 0 ]
