#!/usr/bin/env bash
# librdkafka's mock cluster as a background process, for tests and the demo (no broker can be installed here).
#   tools/kafka.sh start DIR [BROKERS]   start kafka-mock; prints the bootstrap servers (also in DIR/bootstrap)
#   tools/kafka.sh stop DIR              SIGTERM it and wait
# Needs the kafka-mock product built (swift build --product kafka-mock).
set -euo pipefail
command="${1:?usage: tools/kafka.sh start|stop DIR [BROKERS]}"
dir="${2:?usage: tools/kafka.sh start|stop DIR [BROKERS]}"
root=$(cd "$(dirname "$0")/.." && pwd)
case "$command" in
    start)
        mkdir -p "$dir"
        rm -f "$dir/bootstrap"
        bin="${KAFKA_MOCK_BIN:-$(cd "$root" && swift build --show-bin-path)/kafka-mock}"
        "$bin" --brokers "${3:-3}" --bootstrap-file "$dir/bootstrap" >"$dir/kafka-mock.log" 2>&1 &
        echo $! >"$dir/pid"
        for _ in $(seq 1 100); do
            [ -s "$dir/bootstrap" ] && break
            kill -0 "$(cat "$dir/pid")" 2>/dev/null || { cat "$dir/kafka-mock.log" >&2; exit 1; }
            sleep 0.05
        done
        [ -s "$dir/bootstrap" ] || { echo "kafka.sh: kafka-mock did not start" >&2; exit 1; }
        cat "$dir/bootstrap"
        ;;
    stop)
        [ -f "$dir/pid" ] || exit 0
        pid=$(cat "$dir/pid")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        rm -f "$dir/pid"
        ;;
    *) echo "usage: tools/kafka.sh start|stop DIR [BROKERS]" >&2; exit 2 ;;
esac
