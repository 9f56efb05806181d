#!/usr/bin/env bash
# Shared helpers for the local stack: a real PostgreSQL 15 cluster run as the unprivileged
# OS user postgres (PostgreSQL refuses root), bootstrapped like the Supabase platform image.
# Sourced by start.sh, test.sh and bench.sh; defines functions only, runs nothing.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
DENO="$REPO_ROOT/node_modules/.bin/deno"

# The Supabase CLI's well-known local defaults (public values, safe to commit).
LOCAL_JWT_SECRET="super-secret-jwt-token-with-at-least-32-characters-long"
LOCAL_ANON_KEY="eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9.CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0"
LOCAL_SERVICE_ROLE_KEY="eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6InNlcnZpY2Vfcm9sZSIsImV4cCI6MTk4MzgxMjk5Nn0.EGIM96RAZx35lJzdJsyH-qQwv8Hdp7fsn3W0YpN81IU"

log() { printf '[credits] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# db_url ROLE PORT: the loopback URL for a role (every local role's password is postgres).
db_url() { printf 'postgresql://%s:postgres@127.0.0.1:%s/postgres' "$1" "$2"; }

# psql_as ROLE PORT [psql args...]: run psql over loopback, stopping on the first error.
psql_as() {
  local role=$1 port=$2
  shift 2
  PGPASSWORD=postgres "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$role" -d postgres "$@"
}

# db_init DIR: create a cluster in DIR/data owned by the postgres OS user.
db_init() {
  local dir=$1
  mkdir -p "$dir"
  chown postgres "$dir"
  local pwfile="$dir/.pw"
  printf 'postgres\n' >"$pwfile"
  chown postgres "$pwfile"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$dir/data" -U supabase_admin --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  rm -f "$pwfile"
  cat >>"$dir/data/postgresql.conf" <<CONF
# Added by scripts/lib.sh: what the Supabase image preloads and tunes.
listen_addresses = '127.0.0.1'
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 32
max_connections = 200
timezone = 'UTC'
CONF
}

# db_start DIR PORT: start the cluster and wait until it accepts connections.
db_start() {
  local dir=$1 port=$2
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-p $port -k $dir" start >/dev/null || { tail -n 30 "$dir/postgres.log" >&2; die "PostgreSQL did not start"; }
}

# db_stop DIR [MODE]: stop the cluster if it runs (MODE fast by default).
db_stop() {
  local dir=$1 mode=${2:-fast}
  [ -f "$dir/data/postmaster.pid" ] || return 0
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/data" -m "$mode" -w stop >/dev/null 2>&1 || true
}

# db_bootstrap PORT: what the platform image does before any migration.
db_bootstrap() {
  PGPASSWORD=postgres "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U supabase_admin -d postgres \
    -f "$REPO_ROOT/local/platform/bootstrap.sql" >/dev/null
}

# db_migrate PORT: apply, as postgres, each migration not yet recorded, each in one
# transaction with its bookkeeping row, like `supabase db push`.
db_migrate() {
  local port=$1 file base version applied
  applied=$(psql_as postgres "$port" -At -c "select version from supabase_migrations.schema_migrations")
  for file in "$REPO_ROOT"/supabase/migrations/*.sql; do
    base=$(basename "$file" .sql)
    version=${base%%_*}
    grep -qx "$version" <<<"$applied" && continue
    psql_as postgres "$port" --single-transaction -f "$file" \
      -c "insert into supabase_migrations.schema_migrations (version, name) values ('$version', '${base#*_}')" >/dev/null ||
      die "migration $base failed"
    log "applied migration $base"
  done
}

# db_seed PORT: load supabase/seed.sql as postgres.
db_seed() {
  psql_as postgres "$1" -f "$REPO_ROOT/supabase/seed.sql" >/dev/null || die "seed.sql failed"
}

# wait_http URL: wait up to 60 s for a loopback HTTP server to answer.
wait_http() {
  local url=$1 i
  for i in $(seq 1 120); do
    curl -s -o /dev/null "$url" && return 0
    sleep 0.5
  done
  die "no answer from $url"
}

# export_stack_env GATEWAY_PORT DB_PORT: what the platform gives every function, pointed at
# this local stack.
export_stack_env() {
  export GATEWAY_PORT=$1 DB_PORT=$2
  export JWT_SECRET=$LOCAL_JWT_SECRET
  export SUPABASE_URL="http://127.0.0.1:$1"
  export SUPABASE_ANON_KEY=$LOCAL_ANON_KEY
  export SUPABASE_SERVICE_ROLE_KEY=$LOCAL_SERVICE_ROLE_KEY
  export SUPABASE_DB_URL
  SUPABASE_DB_URL=$(db_url postgres "$2")
}

# export_env_file FILE: export each KEY=VALUE of FILE that the environment does not set yet,
# so variables already exported by the user win over the file.
export_env_file() {
  local file=$1 line key
  [ -f "$file" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    key=${line%%=*}
    [ -n "${!key+x}" ] || export "$key=${line#*=}"
  done <"$file"
}
