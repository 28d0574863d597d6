#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the tests on a free loopback port (C collation,
# trust authentication on 127.0.0.1 only), and stops it. Sourced by scripts/test.sh:
#   start_test_postgres   sets MOAT_TEST_POSTGRES_URL (or prints why it cannot, and returns 1)
#   stop_test_postgres    stops the cluster and removes its directory
# Needs PostgreSQL's server binaries (Debian: apt-get install postgresql; apt does not start
# a cluster we use). As root, the cluster runs as the `postgres` user.

start_test_postgres() {
  local bin
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "PostgreSQL is not installed: the PostgreSQL store tests will skip" >&2
    return 1
  fi
  MOAT_TEST_PG_DIR="$(mktemp -d /tmp/moat-test-pg.XXXXXX)"
  local port run=()
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$MOAT_TEST_PG_DIR"
    run=(su postgres -s /bin/sh -c)
  else
    run=(sh -c)
  fi
  "${run[@]}" "'$bin/initdb' -D '$MOAT_TEST_PG_DIR/data' --locale=C -E UTF8 -A trust -U postgres" >"$MOAT_TEST_PG_DIR/initdb.log" 2>&1 \
    || { cat "$MOAT_TEST_PG_DIR/initdb.log" >&2; return 1; }
  "${run[@]}" "'$bin/pg_ctl' -D '$MOAT_TEST_PG_DIR/data' -o \"-p $port -h 127.0.0.1 -k '$MOAT_TEST_PG_DIR'\" -l '$MOAT_TEST_PG_DIR/server.log' -w start" >/dev/null \
    || { cat "$MOAT_TEST_PG_DIR/server.log" >&2; return 1; }
  MOAT_TEST_PG_CTL="$bin/pg_ctl"
  export MOAT_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL for the tests: $MOAT_TEST_POSTGRES_URL"
}

stop_test_postgres() {
  [ -n "${MOAT_TEST_PG_DIR:-}" ] || return 0
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/sh -c "'$MOAT_TEST_PG_CTL' -D '$MOAT_TEST_PG_DIR/data' -m fast -w stop" >/dev/null 2>&1 || true
  else
    "$MOAT_TEST_PG_CTL" -D "$MOAT_TEST_PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$MOAT_TEST_PG_DIR"
  unset MOAT_TEST_PG_DIR
}
