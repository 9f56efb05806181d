#!/usr/bin/env bash
# Installs what the local stack needs when it is missing, so `npm start` and `npm test`
# work on a fresh Debian machine as root: PostgreSQL 15 with pg_cron, pgTAP, pg_prove and
# plpgsql_check from apt, and the npm packages (Deno, squawk) from package.json.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

apt_packages=(postgresql-15 postgresql-contrib postgresql-15-cron postgresql-15-pgtap
  postgresql-15-plpgsql-check libtap-parser-sourcehandler-pgtap-perl curl)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]}: run as root or install them with apt-get"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$DENO" ] || [ ! -x "$REPO_ROOT/node_modules/.bin/squawk" ]; then
  log "installing npm packages"
  (cd "$REPO_ROOT" && npm install --no-audit --no-fund >/dev/null)
fi
"$DENO" --version >/dev/null || die "deno did not install"
