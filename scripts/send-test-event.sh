#!/usr/bin/env bash
# `npm run send-test-event -- <user-id> <credits> [event-id]`: a signed test event to the
# local stack started by `npm start`, with the same secret it uses.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export_env_file "$REPO_ROOT/supabase/functions/.env"
export_env_file "$REPO_ROOT/supabase/functions/.env.example"
export SUPABASE_URL=${SUPABASE_URL:-http://127.0.0.1:${GATEWAY_PORT:-54321}}
exec "$DENO" run --allow-net --allow-env --config="$REPO_ROOT/deno.json" "$REPO_ROOT/local/send-test-event.ts" "$@"
