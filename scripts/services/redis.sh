#!/usr/bin/env bash
# A throwaway Redis server for the tests (Debian's `redis-server` package),
# holding the rate-limit counters of the Redis backend's tests.
#
#   scripts/services/redis.sh up     install once, start, print TEST_REDIS_URL=…
#   scripts/services/redis.sh env    print TEST_REDIS_URL=… if it is running
#   scripts/services/redis.sh down   stop it and remove its directory
#
# Everything lives under ${TARGET_DIR:-target}/test-services/ (relative to
# the repository root): the server's directory redis/ (pid file, log) and
# redis.env, which holds the one line `TEST_REDIS_URL=redis://127.0.0.1:PORT`.
#
# - Binary: `redis-server` on PATH; if there is none and we are root,
#   `apt-get install -y redis-server`. Debian's package also starts a
#   system service on 6379; ours is a separate process on a free port, run
#   by the caller (Redis does not mind root), and the system one is left
#   alone.
# - It listens on 127.0.0.1 only, with no Unix socket, no password (a test
#   fixture holding nothing worth one) and no persistence (`save ""`,
#   `appendonly no`): counters are thrown away with it.
# - `up` is idempotent: a running server is reused; a stale directory
#   (after a reboot, say) is removed and the server started afresh.
set -euo pipefail
cd "$(dirname "$0")/../.."

DIR="${TARGET_DIR:-target}/test-services"
RDIR="$DIR/redis"
ENVFILE="$DIR/redis.env"

say() { echo "redis.sh: $*" >&2; }

is_root() { [[ "$(id -u)" == 0 ]]; }

install() {
    if command -v redis-server >/dev/null 2>&1; then
        return
    fi
    if ! is_root; then
        say "no redis-server on PATH; install Debian's \`redis-server\` package" \
            "(sudo apt-get install redis-server) and retry"
        exit 1
    fi
    say "installing Debian's redis-server package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q redis-server
    command -v redis-server >/dev/null 2>&1 || {
        say "apt-get installed redis-server, but it is not on PATH"
        exit 1
    }
}

port_of() { sed -n 's#^TEST_REDIS_URL=redis://127.0.0.1:\([0-9]*\)$#\1#p' "$ENVFILE" 2>/dev/null; }

running() {
    [[ -f "$ENVFILE" && -f "$RDIR/redis.pid" ]] || return 1
    local pid port
    pid="$(cat "$RDIR/redis.pid")"
    port="$(port_of)"
    [[ -n "$pid" && -n "$port" ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # The pid could be reused by another process: ask the server itself.
    if command -v redis-cli >/dev/null 2>&1; then
        [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == "PONG" ]]
    fi
}

free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
        return
    fi
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    say "found no free port"
    exit 1
}

stop_quietly() {
    [[ -f "$RDIR/redis.pid" ]] || return 0
    local pid
    pid="$(cat "$RDIR/redis.pid")"
    [[ -n "$pid" ]] || return 0
    # Only a redis-server of ours: the pid file may be stale.
    if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == redis-server* ]]; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || return 0
            sleep 0.1
        done
        say "redis-server $pid did not stop"
    fi
}

up() {
    mkdir -p "$DIR"
    if running; then
        cat "$ENVFILE"
        return
    fi
    install
    stop_quietly
    rm -rf -- "$RDIR" "$ENVFILE"
    mkdir -p "$RDIR"
    local base port
    base="$(cd "$RDIR" && pwd -P)"
    port="$(free_port)"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --unixsocket "" \
        --protected-mode yes --save "" --appendonly no --dir "$base" \
        --pidfile "$base/redis.pid" --logfile "$base/redis.log" >/dev/null
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "TEST_REDIS_URL=redis://127.0.0.1:$port" >"$ENVFILE"
            cat "$ENVFILE"
            return
        fi
        sleep 0.1
    done
    say "the server did not start:"
    cat "$base/redis.log" >&2 || true
    exit 1
}

down() {
    stop_quietly
    rm -rf -- "$RDIR" "$ENVFILE"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env)
        if running; then
            cat "$ENVFILE"
        else
            say "not running (run: $0 up)"
            exit 1
        fi
        ;;
    *)
        echo "usage: $0 up|down|env" >&2
        exit 2
        ;;
esac
