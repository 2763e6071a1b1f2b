# PostgreSQL suite: the shared state store with several scheduler replicas (atom_fabric::pg).
#
# `make test-postgres` installs PostgreSQL from Debian packages if its server is missing, starts a
# throwaway cluster in a temp directory on a free loopback port (unix socket in the same temp
# directory), runs the integration tests against it with POSTGRES_DSN exported, and stops and
# removes the cluster on exit, also when a test fails. `make bench-postgres` does the same for
# the replica benchmark. `make test` runs the suite through EXTRA_TESTS.

.PHONY: test-postgres bench-postgres

EXTRA_TESTS += test-postgres

# Built with the workspace's feature set (as test-rust), so only atom-fabric is recompiled.
PG_TEST_CMD ?= $(CARGO) test --workspace --exclude atom-fabric-py --features atom-fabric/postgres-tests --test postgres -- --test-threads=1
PG_BENCH_CMD ?= $(CARGO) bench -p atom-benches --bench postgres_replicas

define ATOM_PG_SCRIPT_TEXT
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
    echo "postgres: installing the server from Debian packages"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
BIN="$(pg_bin)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/atom-pg.XXXXXX")"
RUNAS=""
if [ "$(id -u)" = 0 ]; then
    # The server refuses to run as root: the cluster belongs to the postgres system user.
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$WORK"
    RUNAS=postgres
fi
as_pg() { if [ -n "$RUNAS" ]; then runuser -u "$RUNAS" -- "$@"; else "$@"; fi; }
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
stop() {
    as_pg "$BIN/pg_ctl" -D "$WORK/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap stop EXIT
as_pg "$BIN/initdb" -D "$WORK/data" -U postgres --auth=trust -E UTF8 --no-sync >"$WORK/initdb.log" 2>&1 \
    || { cat "$WORK/initdb.log"; exit 1; }
as_pg "$BIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $WORK -c max_connections=200 -c shared_buffers=128MB" \
    start >/dev/null || { cat "$WORK/server.log"; exit 1; }
as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres atom
# The unix socket in the temp directory: cheaper than loopback TCP for the many short statements.
export POSTGRES_DSN="host=$WORK port=$PORT user=postgres dbname=atom"
export ATOM_PG_DATA="$WORK/data" ATOM_PG_BIN="$BIN" ATOM_PG_RUNAS="$RUNAS"
echo "postgres: throwaway cluster on 127.0.0.1:$PORT ($WORK)"
status=0
"$@" || status=$?
if [ "$status" != 0 ]; then tail -n 40 "$WORK/server.log" || true; fi
exit "$status"
endef
ATOM_PG_SCRIPT := $(value ATOM_PG_SCRIPT_TEXT)
export ATOM_PG_SCRIPT

## test-postgres: the PostgreSQL store suite on a throwaway cluster.
test-postgres:
	bash -c "$$ATOM_PG_SCRIPT" atom-pg $(PG_TEST_CMD)

## bench-postgres: decisions/s with 1, 2 and 3 replicas on one PostgreSQL, beside the embedded store.
bench-postgres:
	bash -c "$$ATOM_PG_SCRIPT" atom-pg $(PG_BENCH_CMD)
