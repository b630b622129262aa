#!/usr/bin/env bash
# A streaming read replica of the PostgreSQL on 127.0.0.1:5432, for test/replica (DATABASE_READ_URL).
#   .ci/replica.sh start   pg_basebackup -R into REPLICA_DIR, started on 127.0.0.1:REPLICA_PORT (hot standby)
#   .ci/replica.sh stop    stops it and removes REPLICA_DIR
#   .ci/replica.sh halt    stops the server, keeping REPLICA_DIR (test/replica: the replica going away)
#   .ci/replica.sh resume  starts it again from REPLICA_DIR; it catches up by streaming
# Adds `host replication all 127.0.0.1/32 trust` to the primary's pg_hba.conf when missing (and
# reloads it); nothing else of the primary is changed. PostgreSQL refuses to run as root: the
# cluster commands run as the postgres user.
set -euo pipefail

PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}"
PRIMARY_PORT="${PRIMARY_PORT:-5432}"
REPLICA_PORT="${REPLICA_PORT:-5433}"
REPLICA_DIR="${REPLICA_DIR:-/tmp/vla-replica-$REPLICA_PORT}"
HBA="${PG_HBA:-$(psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -tAc 'show hba_file' 2>/dev/null || true)}"

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

run_server() {
  as_pg "$PG_BIN/pg_ctl" -D "$REPLICA_DIR" -l "$REPLICA_DIR/log" -w -t 30 start \
    -o "-p $REPLICA_PORT -k $REPLICA_DIR -c listen_addresses=127.0.0.1 -c hot_standby=on -c fsync=off -c hba_file=${HBA:-$REPLICA_DIR/pg_hba.conf}"
}

start() {
  if as_pg "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$REPLICA_PORT"; then
    echo "replica already answering on 127.0.0.1:$REPLICA_PORT"
    return 0
  fi
  if [ -n "$HBA" ] && ! grep -Eq '^\s*host\s+replication\s+all\s+127\.0\.0\.1/32\s+trust' "$HBA"; then
    echo "host replication all 127.0.0.1/32 trust" >>"$HBA"
    psql -q -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -tAc 'select pg_reload_conf()' >/dev/null
  fi
  rm -rf "$REPLICA_DIR"
  install -d -m 0700 -o postgres -g postgres "$REPLICA_DIR"
  as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$REPLICA_DIR" -R -X stream -c fast
  # Debian keeps the primary's config in /etc, so the copy has none: an empty one, settings below.
  as_pg touch "$REPLICA_DIR/postgresql.conf" "$REPLICA_DIR/pg_ident.conf"
  run_server
  for _ in $(seq 1 50); do
    [ "$(psql -h 127.0.0.1 -p "$REPLICA_PORT" -U postgres -tAc 'select pg_is_in_recovery()' 2>/dev/null)" = "t" ] && break
    sleep 0.2
  done
  [ "$(psql -h 127.0.0.1 -p "$REPLICA_PORT" -U postgres -tAc 'select pg_is_in_recovery()')" = "t" ]
  echo "replica streaming from 127.0.0.1:$PRIMARY_PORT on 127.0.0.1:$REPLICA_PORT ($REPLICA_DIR)"
}

stop() {
  if [ -f "$REPLICA_DIR/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$REPLICA_DIR" -w -t 30 stop -m fast || true
  fi
  rm -rf "$REPLICA_DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  halt) as_pg "$PG_BIN/pg_ctl" -D "$REPLICA_DIR" -w -t 30 stop -m fast ;;
  resume) run_server ;;
  *) echo "usage: $0 start|stop|halt|resume" >&2; exit 2 ;;
esac
