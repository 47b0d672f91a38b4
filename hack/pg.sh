#!/usr/bin/env bash
# Throwaway PostgreSQL clusters for the ledger's tests and benchmarks.
#
#   hack/pg.sh start DIR     initdb in DIR, start on 127.0.0.1 at a free port, create database
#                            "kswarm", print postgresql://postgres@127.0.0.1:PORT/kswarm
#   hack/pg.sh restart DIR   stop (fast) and start again on the same port and data
#   hack/pg.sh stop DIR      stop (fast) and remove DIR
#   hack/pg.sh url DIR       print the URL of the cluster in DIR
#
# The cluster is tuned for tests, not for safety: fsync and synchronous_commit are off, so a
# crash of the machine loses data (a fast shutdown or restart does not). Authentication is
# "trust" on loopback and on the unix socket, which lives inside DIR.
# PostgreSQL refuses to run as root: when run by root, initdb and postgres run as the
# "postgres" OS user and DIR is handed to that user.
set -euo pipefail

PG_USER=postgres
DB_NAME=kswarm

die() {
  echo "pg.sh: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 start|restart|stop|url DIR" >&2
  exit 2
}

# The server binaries: pg_config --bindir when it names a directory with initdb, else the
# newest Debian-style /usr/lib/postgresql/VERSION/bin, else initdb on PATH.
find_bindir() {
  local dir
  if command -v pg_config >/dev/null 2>&1; then
    dir=$(pg_config --bindir 2>/dev/null || true)
    if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
      echo "$dir"
      return
    fi
  fi
  dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null \
    | sort -V | tail -n 1 || true)
  if [[ -n "$dir" && -x "$dir/initdb" ]]; then
    echo "$dir"
    return
  fi
  if command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return
  fi
  die "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; install the" \
    "postgresql package or put its bin directory on PATH"
}

# Run a command as the cluster's owner: ourselves, or the postgres user when we are root.
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u "$PG_USER" -- "$@"
  else
    "$@"
  fi
}

free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  else
    echo $((20000 + RANDOM % 30000))
  fi
}

url_of() {
  echo "postgresql://${PG_USER}@127.0.0.1:$(cat "$1/port")/${DB_NAME}"
}

pg_start() {
  as_owner "$BIN/pg_ctl" -D "$1/data" -l "$1/postgres.log" -w -t 60 start >/dev/null
}

cmd_start() {
  local dir=$1 port attempt
  [[ ! -e "$dir/data" ]] || die "$dir/data exists; stop that cluster first ($0 stop $dir)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  # A unix socket path has at most 107 bytes: DIR/sock/.s.PGSQL.PORT must fit.
  ((${#dir} <= 80)) || die "DIR is too long for PostgreSQL's unix socket path: $dir"
  cd "$dir" # the postgres user may not be allowed into the caller's directory
  if [[ "$(id -u)" == 0 ]]; then
    id "$PG_USER" >/dev/null 2>&1 || die "running as root and there is no '$PG_USER' user"
    chown "$PG_USER:" "$dir"
    runuser -u "$PG_USER" -- test -w "$dir" \
      || die "user '$PG_USER' cannot write $dir; choose a DIR whose parents it can enter"
  fi
  mkdir -p "$dir/sock" 2>/dev/null || as_owner mkdir -p "$dir/sock"
  [[ "$(id -u)" != 0 ]] || chown "$PG_USER:" "$dir/sock"
  as_owner "$BIN/initdb" -D "$dir/data" -U "$PG_USER" -A trust -E UTF8 --no-locale \
    --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    # Settings live in postgresql.auto.conf, so restart keeps port and tuning.
    as_owner tee "$dir/data/postgresql.auto.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
max_connections = 300
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
EOF
    if pg_start "$dir"; then
      echo "$port" | as_owner tee "$dir/port" >/dev/null
      as_owner "$BIN/createdb" -h 127.0.0.1 -p "$port" -U "$PG_USER" "$DB_NAME" \
        || die "createdb $DB_NAME failed on port $port"
      url_of "$dir"
      return
    fi
    echo "pg.sh: start on port $port failed (attempt $attempt); log follows" >&2
    tail -n 5 "$dir/postgres.log" >&2 || true
  done
  die "PostgreSQL did not start; see $dir/postgres.log"
}

cmd_stop() {
  local dir=$1
  [[ -e "$dir" ]] || return 0
  dir=$(cd "$dir" && pwd)
  cd /
  if [[ -f "$dir/data/postmaster.pid" ]]; then
    as_owner "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

cmd_restart() {
  local dir=$1
  [[ -f "$dir/port" ]] || die "no cluster in $dir"
  dir=$(cd "$dir" && pwd)
  cd "$dir"
  if [[ -f "$dir/data/postmaster.pid" ]]; then
    as_owner "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
  fi
  pg_start "$dir" || { tail -n 20 "$dir/postgres.log" >&2; die "restart failed"; }
  url_of "$dir"
}

[[ $# == 2 ]] || usage
BIN=$(find_bindir)
case "$1" in
  start) cmd_start "$2" ;;
  restart) cmd_restart "$2" ;;
  stop) cmd_stop "$2" ;;
  url)
    [[ -f "$2/port" ]] || die "no cluster in $2"
    url_of "$2"
    ;;
  *) usage ;;
esac
