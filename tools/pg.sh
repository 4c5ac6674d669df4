#!/usr/bin/env bash
# A throwaway PostgreSQL 15 server on 127.0.0.1 for tests and the demo.
#   tools/pg.sh start DIR    initdb (first time) and start; prints the conninfo; DIR/conninfo holds it too
#   tools/pg.sh stop DIR     fast shutdown
#   tools/pg.sh restart DIR  stop, then start on the same port
# As root, the server runs as the postgres user (root cannot run initdb).
set -euo pipefail
command="${1:?usage: tools/pg.sh start|stop|restart DIR}"
dir="${2:?usage: tools/pg.sh start|stop|restart DIR}"
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/initdb" ] || { echo "pg.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
    mkdir -p "$dir"
    chmod 755 "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_postgres "$bin/initdb" -D "$dir/data" --auth=trust -U postgres -E UTF8 >"$dir/initdb.log" 2>&1
        # Members of walctl_password_login must give their password over TCP (tests of wrong passwords); every
        # other role is trusted.
        hba="$dir/data/pg_hba.conf"
        { echo "host all +walctl_password_login 127.0.0.1/32 scram-sha-256"; cat "$hba"; } >"$hba.new"
        mv "$hba.new" "$hba"
        [ "$(id -u)" -eq 0 ] && chown postgres "$hba"
        chmod 600 "$hba"
    fi
    if [ ! -f "$dir/port" ]; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' >"$dir/port"
    fi
    port=$(cat "$dir/port")
    as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c max_connections=200" start >/dev/null
    echo "host=127.0.0.1 port=$port user=postgres dbname=postgres" | tee "$dir/conninfo"
}

stop() {
    [ -f "$dir/data/PG_VERSION" ] || return 0
    as_postgres "$bin/pg_ctl" -D "$dir/data" -w -t 30 -m fast stop >/dev/null 2>&1 || true
}

case "$command" in
    start) start ;;
    stop) stop ;;
    restart) stop; start >/dev/null ;;
    *) echo "usage: tools/pg.sh start|stop|restart DIR" >&2; exit 2 ;;
esac
