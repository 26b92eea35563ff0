#!/usr/bin/env bash
# A MongoDB-wire test server (SecantusDB, GPL-2.0: a separate process for
# tests only, never a dependency of our crates — shared/research/
# mongo-test-server.md).
#
#   scripts/services/mongo.sh up     install once, start, print TEST_MONGO_URL=…
#   scripts/services/mongo.sh env    print TEST_MONGO_URL=… if it is running
#   scripts/services/mongo.sh down   stop it
#
# Everything lives under ${TARGET_DIR:-target}/test-services/ (relative to
# the repository root): the venv, the log, the pid file and mongo.env, which
# holds the one line `TEST_MONGO_URL=mongodb://127.0.0.1:PORT`. `up` is
# idempotent: a server that is already running is reused.
set -euo pipefail
cd "$(dirname "$0")/../.."

SECANTUS_VERSION="0.7.0b3"
DIR="${TARGET_DIR:-target}/test-services"
VENV="$DIR/mongo-venv"
PIDFILE="$DIR/mongo.pid"
LOG="$DIR/mongo.log"
ENVFILE="$DIR/mongo.env"

running() {
    [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

install() {
    # The stamp is written only after a complete install, so an interrupted
    # one is redone from scratch.
    local stamp="$VENV/.installed-secantusdb-$SECANTUS_VERSION"
    if [[ -f "$stamp" && -x "$VENV/bin/secantusd-py" ]]; then
        return
    fi
    echo "mongo.sh: installing secantusdb==$SECANTUS_VERSION into $VENV" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "secantusdb==$SECANTUS_VERSION"
    touch "$stamp"
}

up() {
    mkdir -p "$DIR"
    if running; then
        if [[ -f "$ENVFILE" ]]; then
            cat "$ENVFILE"
            return
        fi
        # Running but never reported ready (an interrupted `up`): restart.
        down
    fi
    install
    local port
    port="$(free_port)"
    rm -f "$ENVFILE"
    : > "$LOG"
    setsid "$VENV/bin/secantusd-py" --host 127.0.0.1 --port "$port" \
        --storage-path :memory: >> "$LOG" 2>&1 < /dev/null &
    echo $! > "$PIDFILE"
    # Start-up takes about 2 s; allow 60 on a loaded machine.
    for _ in $(seq 1 600); do
        if grep -q "secantus listening on" "$LOG"; then
            echo "TEST_MONGO_URL=mongodb://127.0.0.1:$port" > "$ENVFILE"
            cat "$ENVFILE"
            return
        fi
        if ! running; then
            echo "mongo.sh: secantusd-py exited during start-up:" >&2
            cat "$LOG" >&2
            rm -f "$PIDFILE"
            exit 1
        fi
        sleep 0.1
    done
    echo "mongo.sh: secantusd-py did not report readiness in 60 s:" >&2
    cat "$LOG" >&2
    down
    exit 1
}

down() {
    if running; then
        local pid
        pid="$(cat "$PIDFILE")"
        # setsid made it a process-group leader: end the group, politely
        # first (it can take a few seconds to exit on SIGTERM).
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE" "$ENVFILE"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env)
        if running && [[ -f "$ENVFILE" ]]; then
            cat "$ENVFILE"
        else
            echo "mongo.sh: not running (run: $0 up)" >&2
            exit 1
        fi
        ;;
    *)
        echo "usage: $0 up|down|env" >&2
        exit 2
        ;;
esac
