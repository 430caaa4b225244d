#!/usr/bin/env bash
# A PostgreSQL for the tests. Prints its URL on the first line of stdout.
#
#   scripts/test-postgres.sh          # URL (and, if it started one, line 2: the cluster folder)
#   scripts/test-postgres.sh --stop DIR   # stops and removes a cluster it started
#
# Uses INFSH_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres,
# when a server answers there. Otherwise starts a throwaway cluster with
# initdb/pg_ctl in a temporary folder on a free loopback port, trust auth
# (installing Debian's `postgresql` package first when initdb is missing), and
# prints its folder on line 2 so the caller can stop it (scripts/test.sh does,
# in a trap). Idempotent: running it again installs nothing new.
set -euo pipefail

find_bin() { # name -> path, from PATH or Debian's versioned folders
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return 0; fi
  local found
  found="$(ls -1d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1 || true)"
  [ -n "$found" ] && echo "$found"
}

# Runs a server binary as an unprivileged user (initdb and postgres refuse root).
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

if [ "${1:-}" = "--stop" ]; then
  dir="${2:?usage: --stop DIR}"
  pg_ctl="$(find_bin pg_ctl)"
  if [ -n "$pg_ctl" ] && [ -d "$dir/data" ]; then
    as_owner "$pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  exit 0
fi

url="${INFSH_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

answers() {
  local isready
  isready="$(find_bin pg_isready || true)"
  [ -n "$isready" ] && "$isready" -q -d "$1" -t 3
}

if answers "$url"; then
  echo "$url"
  exit 0
fi
if [ -n "${INFSH_TEST_DATABASE_URL:-}" ]; then
  echo "INFSH_TEST_DATABASE_URL=$url does not answer" >&2
  exit 1
fi

if [ -z "$(find_bin initdb || true)" ]; then
  echo "==> installing PostgreSQL (Debian package postgresql)" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
fi
initdb="$(find_bin initdb)"
pg_ctl="$(find_bin pg_ctl)"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
dir="$(mktemp -d "${TMPDIR:-/tmp}/infsh-test-pg.XXXXXX")"
chmod 755 "$dir"
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$dir"
fi
as_owner "$initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 >/dev/null
# Sockets in the folder (no /var/run/postgresql needed); loopback TCP only.
as_owner "$pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off" start >/dev/null
echo "postgres://postgres@127.0.0.1:$port/postgres"
echo "$dir"
