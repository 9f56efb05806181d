#!/usr/bin/env bash
# `npm run torture -- --seed N --ops M`: the seeded ledger torture test (issue 7) on a
# throwaway local stack of its own, built exactly as `npm test` builds its stack (same
# lib.sh steps, own ports and data directory, removed at the end). The Deno program in
# supabase/functions/tests/torture/ gets the cluster's data directory and pg_ctl so that it can
# crash PostgreSQL (`pg_ctl stop -m immediate`) and start it again.
#
# Ports: TORTURE_GATEWAY_PORT (default 61321) and TORTURE_DB_PORT (default 61322).
# Every argument is passed to the program: --seed N --ops M [--users U] [--checkpoint-every K]
# [--monitor schema.fn|none].
set -uo pipefail
source "$(dirname "$0")/lib.sh"
bash "$REPO_ROOT/scripts/install.sh" || exit 1
cd "$REPO_ROOT"

gateway_port=${TORTURE_GATEWAY_PORT:-61321}
db_port=${TORTURE_DB_PORT:-61322}
dir=$(mktemp -d /tmp/credits-torture.XXXXXX)
stack_pid=""

cleanup() {
  touch "$dir/stopping"
  [ -f "$dir/stack.pid" ] && kill "$(cat "$dir/stack.pid")" 2>/dev/null
  [ -n "$stack_pid" ] && wait "$stack_pid" 2>/dev/null
  db_stop "$dir" immediate
  rm -rf "$dir"
}
trap cleanup EXIT

log "torture stack: PostgreSQL on 127.0.0.1:$db_port, gateway on 127.0.0.1:$gateway_port"
db_init "$dir"
db_start "$dir" "$db_port"
db_bootstrap "$db_port"
db_migrate "$db_port" 2>/dev/null
db_seed "$db_port"

export_stack_env "$gateway_port" "$db_port"
# Fixed local values, whatever the developer has exported: the run never reaches real services.
export STRIPE_SECRET_KEY=sk_test_local_placeholder
export STRIPE_WEBHOOK_SECRET=whsec_test_secret_for_the_torture_run
export ADMIN_API_KEY=admin_test_default_key_for_the_torture_0001
export STRIPE_API_BASE="http://127.0.0.1:$((gateway_port + 60))"
export SLACK_WEBHOOK_URL=""
unset CHECKOUT_SUCCESS_URL CHECKOUT_CANCEL_URL CHECKOUT_ALLOWED_ORIGINS ADMIN_API_KEYS
# Local defaults of any other variable a function needs (added by later issues).
export_env_file "$REPO_ROOT/supabase/functions/.env.example"
export SUPABASE_ADMIN_DB_URL
SUPABASE_ADMIN_DB_URL=$(db_url supabase_admin "$db_port")
# The stack runs under a small supervisor that starts it again if its process dies, as a
# process manager would in production; the program counts such crashes (gateway_crashes) and
# says so. `npm test` runs the stack without one: there a crash fails the torture step.
supervise_stack() {
  while [ ! -f "$dir/stopping" ]; do
    "$DENO" run --allow-all --config=deno.json local/stack.ts >>"$dir/stack.log" 2>&1 &
    echo $! >"$dir/stack.pid"
    wait $!
    code=$?
    [ -f "$dir/stopping" ] || echo "# torture.sh: local/stack.ts exited ($code), starting it again" >>"$dir/stack.log"
    sleep 0.5
  done
}
supervise_stack &
stack_pid=$!
wait_http "$SUPABASE_URL/functions/v1/" || { cat "$dir/stack.log"; exit 1; }

TORTURE_PG_DATA="$dir/data" TORTURE_PG_LOG="$dir/postgres.log" TORTURE_PG_SOCKET_DIR="$dir" \
  TORTURE_PG_BIN="$PG_BIN" TORTURE_PG_OS_USER=postgres \
  TORTURE_GATEWAY_SUPERVISED=1 TORTURE_STACK_PID_FILE="$dir/stack.pid" \
  "$DENO" run --allow-all --config=deno.json supabase/functions/tests/torture/main.ts "$@"
status=$?
if [ $status -ne 0 ]; then
  echo "# stack log (last 40 lines)"
  tail -n 40 "$dir/stack.log"
  echo "# PostgreSQL log (last 20 lines)"
  tail -n 20 "$dir/postgres.log"
fi
exit $status
