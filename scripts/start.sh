#!/usr/bin/env bash
# `npm start`: the local stack in the foreground (Ctrl-C stops it). Data is kept in
# .supabase-local/ between runs; new migrations are applied at each start.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bash "$REPO_ROOT/scripts/install.sh"

gateway_port=${GATEWAY_PORT:-54321}
db_port=${DB_PORT:-54322}
dir="$REPO_ROOT/.supabase-local"

fresh=false
if [ ! -d "$dir/data" ]; then
  log "creating a new database in .supabase-local/"
  db_init "$dir"
  fresh=true
fi
db_start "$dir" "$db_port"
trap 'db_stop "$dir"' EXIT
$fresh && db_bootstrap "$db_port"
db_migrate "$db_port"
$fresh && db_seed "$db_port"

export_stack_env "$gateway_port" "$db_port"
export_env_file "$REPO_ROOT/supabase/functions/.env"
export_env_file "$REPO_ROOT/supabase/functions/.env.example"

cat <<INFO

  Local stack (Ctrl-C to stop)
  API URL:          $SUPABASE_URL
  Functions:        $SUPABASE_URL/functions/v1/<name>
  RPC:              $SUPABASE_URL/rest/v1/rpc/<function>
  DB URL:           $(db_url postgres "$db_port")
  JWT secret:       $JWT_SECRET
  anon key:         $SUPABASE_ANON_KEY
  service_role key: $SUPABASE_SERVICE_ROLE_KEY

INFO
LOCAL_SCHEDULER=1 "$DENO" run --allow-all --config="$REPO_ROOT/deno.json" "$REPO_ROOT/local/stack.ts"
