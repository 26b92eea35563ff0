#!/usr/bin/env bash
# A real OpenID Provider for the OAuth end-to-end tests: npm `oidc-provider`
# (panva, OpenID Certified) behind our small test wrapper,
# tests/support/oidc/provider.mjs (read its header for the control endpoint,
# the login hint and the tamper modes).
#
#   scripts/services/oidc.sh up     install once, start, print TEST_OIDC_URL=…
#   scripts/services/oidc.sh env    print TEST_OIDC_URL=… if it is running
#   scripts/services/oidc.sh down   stop it
#
# Everything lives under ${TARGET_DIR:-target}/test-services/ (relative to
# the repository root): oidc/ holds a copy of the wrapper, package.json and
# package-lock.json and the node_modules `npm ci` makes from them (the lock
# pins every package); oidc.log, oidc.pid and oidc.env, which holds the one
# line `TEST_OIDC_URL=http://127.0.0.1:PORT` (the issuer, no trailing
# slash).
#
# - Needs Node.js >= 20 (`node`, `npm`) on the PATH; npm fetches from its
#   configured registry, using its cache when it can.
# - `up` is idempotent: a running provider is reused, unless the wrapper or
#   the lock file changed since it started (then it is restarted, so a test
#   never runs against stale harness code). The provider picks its own free
#   port and reports it; `up` waits until discovery answers.
# - State (clients, sessions, codes, keys) is in memory: a restart forgets
#   it, and the signing keys change.
set -euo pipefail
cd "$(dirname "$0")/../.."

SRC="tests/support/oidc"
DIR="${TARGET_DIR:-target}/test-services"
ODIR="$DIR/oidc"
PIDFILE="$DIR/oidc.pid"
LOG="$DIR/oidc.log"
ENVFILE="$DIR/oidc.env"
# What the running provider was started from (hash of wrapper and lock).
STARTED="$DIR/oidc.started"

say() { echo "oidc.sh: $*" >&2; }

running() {
    [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

source_hash() {
    cat "$SRC/provider.mjs" "$SRC/package.json" "$SRC/package-lock.json" | sha256sum | cut -d' ' -f1
}

check_node() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        say "Node.js (node and npm, version 20 or later) is required for the test OpenID Provider"
        exit 1
    fi
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    if (( major < 20 )); then
        say "Node.js $(node --version) is too old: the test OpenID Provider needs 20 or later"
        exit 1
    fi
}

install() {
    mkdir -p "$ODIR"
    # The stamp names the lock file's hash and is written only after a
    # complete install, so a changed lock or an interrupted install is redone.
    local lockhash stamp
    lockhash="$(sha256sum "$SRC/package-lock.json" | cut -d' ' -f1)"
    stamp="$ODIR/.installed-$lockhash"
    if [[ ! -f "$stamp" || ! -d "$ODIR/node_modules/oidc-provider" ]]; then
        say "installing oidc-provider and jose (npm ci) into $ODIR"
        rm -rf "$ODIR/node_modules" "$ODIR"/.installed-*
        cp "$SRC/package.json" "$SRC/package-lock.json" "$ODIR/"
        (cd "$ODIR" && npm ci --ignore-scripts --no-audit --no-fund --prefer-offline \
            --loglevel=error >&2)
        touch "$stamp"
    fi
    # The wrapper runs from here so that Node finds node_modules beside it.
    cp "$SRC/provider.mjs" "$ODIR/provider.mjs"
}

# Exits 0 once the discovery document answers with our issuer.
discovery_answers() {
    node -e '
        const base = process.argv[1];
        fetch(base + "/.well-known/openid-configuration")
            .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
            .then((d) => process.exit(d.issuer === base ? 0 : 1), () => process.exit(1));
    ' "$1" 2>/dev/null
}

up() {
    mkdir -p "$DIR"
    check_node
    if running; then
        if [[ -f "$ENVFILE" && -f "$STARTED" && "$(cat "$STARTED")" == "$(source_hash)" ]]; then
            cat "$ENVFILE"
            return
        fi
        # Started from other sources, or never reported ready: restart.
        say "restarting the provider (its sources changed or it never became ready)"
        down
    fi
    install
    rm -f "$ENVFILE"
    : > "$LOG"
    local out="$ODIR/stdout"
    : > "$out"
    source_hash > "$STARTED"
    setsid node "$ODIR/provider.mjs" --port 0 > "$out" 2>> "$LOG" < /dev/null &
    echo $! > "$PIDFILE"
    # Start-up takes about a second; allow 60 on a loaded machine.
    local port="" url
    for _ in $(seq 1 600); do
        if [[ -z "$port" ]]; then
            port="$(sed -n 's/^LISTENING \([0-9][0-9]*\)$/\1/p' "$out" | head -n1)"
        fi
        if [[ -n "$port" ]]; then
            url="http://127.0.0.1:$port"
            if discovery_answers "$url"; then
                echo "TEST_OIDC_URL=$url" > "$ENVFILE"
                cat "$ENVFILE"
                return
            fi
        fi
        if ! running; then
            say "the provider exited during start-up:"
            cat "$LOG" >&2
            rm -f "$PIDFILE" "$STARTED"
            exit 1
        fi
        sleep 0.1
    done
    say "the provider did not answer discovery in 60 s:"
    cat "$LOG" >&2
    down
    exit 1
}

down() {
    if running; then
        local pid
        pid="$(cat "$PIDFILE")"
        # setsid made it a process-group leader: end the group, politely first.
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE" "$ENVFILE" "$STARTED"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env)
        if running && [[ -f "$ENVFILE" ]]; then
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
