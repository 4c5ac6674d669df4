# Sourced by the PostgreSQL benchmarks (bench-postgres.sh, bench-pg-indexes.sh, bench-replay.sh): a walctl to measure,
# a work directory and a throwaway PostgreSQL 15 server, removed on exit.
#   bench_pg_setup NAME   sets WALCTL_BIN (a release build unless given), work, pgdir, conninfo; db NAME gives the
#                         conninfo of database NAME on that server.
bench_pg_setup() {
    root=$(pwd)
    if [ -z "${WALCTL_BIN:-}" ]; then
        flock -o /tmp/walctl-build.lock swift build -c release --product walctl >&2
        WALCTL_BIN=$(swift build -c release --show-bin-path)/walctl
    fi
    work=$(mktemp -d "/tmp/walctl-$1.XXXXXX")
    pgdir=$(mktemp -d "/tmp/walctl-$1-pg.XXXXXX")
    trap '"$root/tools/pg.sh" stop "$pgdir"; rm -rf "$work" "$pgdir"' EXIT
    conninfo=$("$root/tools/pg.sh" start "$pgdir")
    export PGOPTIONS="-c client_min_messages=warning"
}
db() { echo "${conninfo/dbname=postgres/dbname=$1}"; }
