#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests (Debian's `postgresql`
# package; as root, run by an unprivileged user, since initdb refuses root).
#
#   scripts/services/postgres.sh up     install once, initdb, start, print TEST_PG_URL=…
#   scripts/services/postgres.sh env    print TEST_PG_URL=… if it is running
#   scripts/services/postgres.sh down   stop it and remove the cluster
#
# Everything lives under ${TARGET_DIR:-target}/test-services/ (relative to
# the repository root): the cluster in pg/ (data/, the log) and pg.env,
# which holds the one line
# `TEST_PG_URL=postgres://regstack@127.0.0.1:PORT/regstack_test`.
#
# - Binaries: the newest /usr/lib/postgresql/*/bin with initdb and pg_ctl;
#   if there is none and we are root, `apt-get install -y postgresql`.
# - initdb refuses to run as root. As root (CI), the cluster belongs to the
#   system user `regstack-pg` (created if missing) and every server command
#   runs through `runuser`; as anyone else, it belongs to the caller. If
#   that user cannot reach the build directory (a checkout under /root, say),
#   the cluster goes to a private directory under ${TMPDIR:-/tmp} and pg/
#   becomes a symlink to it; `down` removes both.
# - The server listens on 127.0.0.1 only, on a free port, with no Unix
#   socket and `trust` authentication: it is a test fixture that holds
#   nothing worth a password. Durability is off (fsync, full-page writes),
#   which makes tests faster and is fine for data thrown away anyway.
# - `up` is idempotent: a running cluster is reused. A cluster that exists
#   but is not running (after a reboot, say) is removed and made afresh.
set -euo pipefail
cd "$(dirname "$0")/../.."

DIR="${TARGET_DIR:-target}/test-services"
PGDIR="$DIR/pg"
ENVFILE="$DIR/pg.env"
PG_USER="regstack-pg"
DB_SUPERUSER="regstack"
DB_NAME="regstack_test"

say() { echo "postgres.sh: $*" >&2; }

is_root() { [[ "$(id -u)" == 0 ]]; }

# The newest installed server version's bin directory, or nothing.
find_bin() {
    local dir best=""
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]] || continue
        if [[ -z "$best" ]] || [[ "$(printf '%s\n%s\n' "$best" "$dir" | sort -V | tail -n1)" == "$dir" ]]; then
            best="$dir"
        fi
    done
    [[ -n "$best" ]] && echo "$best"
}

install() {
    BIN="$(find_bin || true)"
    if [[ -n "$BIN" ]]; then
        return
    fi
    if ! is_root; then
        say "no PostgreSQL server under /usr/lib/postgresql/*/bin; install Debian's" \
            "\`postgresql\` package (sudo apt-get install postgresql) and retry"
        exit 1
    fi
    say "installing Debian's postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q postgresql
    BIN="$(find_bin || true)"
    if [[ -z "$BIN" ]]; then
        say "apt-get installed postgresql, but no initdb/pg_ctl under /usr/lib/postgresql/*/bin"
        exit 1
    fi
}

# Runs a command as the cluster's owner.
as_owner() {
    if is_root; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

ensure_owner() {
    is_root || return 0
    if ! id -u "$PG_USER" >/dev/null 2>&1; then
        say "creating system user $PG_USER"
        useradd --system --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$PG_USER"
    fi
}

# Where the cluster really lives: pg/ itself, or (when the owner cannot
# reach the build directory) the target of the pg symlink.
cluster_dir() {
    if [[ -L "$PGDIR" ]]; then
        readlink "$PGDIR"
    else
        echo "$PGDIR"
    fi
}

running() {
    local base
    base="$(cluster_dir)"
    [[ -f "$ENVFILE" && -f "$base/data/postmaster.pid" ]] || return 1
    BIN="$(find_bin || true)"
    [[ -n "$BIN" ]] || return 1
    as_owner "$BIN/pg_ctl" -D "$base/data" status >/dev/null 2>&1
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

# Removes the cluster's files (and the private directory pg/ points to).
remove_cluster() {
    local base
    base="$(cluster_dir)"
    if [[ -L "$PGDIR" ]]; then
        rm -rf -- "$base"
        rm -f -- "$PGDIR"
    else
        rm -rf -- "$PGDIR"
    fi
    rm -f -- "$ENVFILE"
}

# Makes an empty cluster directory the owner can write, and echoes it.
make_cluster_dir() {
    mkdir -p "$PGDIR"
    if is_root; then
        chown "$PG_USER:" "$PGDIR"
        chmod 0700 "$PGDIR"
        # Checked by absolute path: the server resolves it from `/`, so every
        # ancestor must let the owner through.
        if ! runuser -u "$PG_USER" -- test -w "$(cd "$PGDIR" && pwd -P)" 2>/dev/null; then
            # An ancestor of the build directory is closed to other users.
            rmdir "$PGDIR"
            local private
            private="$(mktemp -d "${TMPDIR:-/tmp}/regstack-pg.XXXXXXXX")"
            chown "$PG_USER:" "$private"
            chmod 0700 "$private"
            ln -s "$private" "$PGDIR"
            say "$PG_USER cannot reach $PGDIR; the cluster lives in $private"
            echo "$private"
            return
        fi
    fi
    echo "$PGDIR"
}

up() {
    mkdir -p "$DIR"
    if running; then
        cat "$ENVFILE"
        return
    fi
    install
    ensure_owner
    # Whatever is left of an earlier cluster is stale: start from nothing.
    stop_quietly
    remove_cluster

    local base port log
    base="$(make_cluster_dir)"
    # Absolute paths: pg_ctl runs the server from its own working directory.
    base="$(cd "$base" && pwd -P)"
    log="$base/postgres.log"
    port="$(free_port)"

    as_owner "$BIN/initdb" --pgdata="$base/data" --username="$DB_SUPERUSER" \
        --auth=trust --encoding=UTF8 --locale=C --no-sync >"$base/initdb.log" 2>&1 || {
        say "initdb failed:"
        cat "$base/initdb.log" >&2
        exit 1
    }
    cat >>"$base/data/postgresql.conf" <<EOF

# scripts/services/postgres.sh: a throwaway test cluster.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    if ! as_owner "$BIN/pg_ctl" --pgdata="$base/data" --log="$log" --wait \
        --timeout=60 start >/dev/null; then
        say "the server did not start:"
        cat "$log" >&2
        exit 1
    fi
    "$BIN/psql" -X -q -v ON_ERROR_STOP=1 \
        "postgres://$DB_SUPERUSER@127.0.0.1:$port/postgres" \
        -c "CREATE DATABASE $DB_NAME" >/dev/null
    echo "TEST_PG_URL=postgres://$DB_SUPERUSER@127.0.0.1:$port/$DB_NAME" >"$ENVFILE"
    cat "$ENVFILE"
}

# Stops a server of ours if one runs from the cluster directory.
stop_quietly() {
    local base
    base="$(cluster_dir)"
    [[ -f "$base/data/postmaster.pid" ]] || return 0
    BIN="${BIN:-$(find_bin || true)}"
    [[ -n "$BIN" ]] || return 0
    as_owner "$BIN/pg_ctl" --pgdata="$base/data" --mode=fast --wait --timeout=60 \
        stop >/dev/null 2>&1 || true
}

down() {
    stop_quietly
    remove_cluster
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
