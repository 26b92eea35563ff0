#!/usr/bin/env bash
# A real browser for the account pages' browser suite (tests/api/browser.rs):
# Debian's headless `chromium`, driven by npm `playwright-core` (no browser
# download of its own: it launches /usr/bin/chromium), with npm `axe-core`
# for the accessibility check.
#
#   scripts/services/chromium.sh up     install once, print TEST_BROWSER_URL=…
#   scripts/services/chromium.sh env    print TEST_BROWSER_URL=… if installed
#   scripts/services/chromium.sh down   nothing runs between tests: a no-op
#
# - `chromium` comes from apt when /usr/bin/chromium is missing (needs root,
#   or sudo).
# - The npm packages are pinned by tests/support/browser/package-lock.json
#   and installed with `npm ci` into ${TARGET_DIR:-target}/test-services/browser/,
#   redone when the lock changes.
# - TEST_BROWSER_URL is `file://` + that directory (absolute): the test runs
#   its driver script there, so Node finds node_modules beside it.
# - Nothing stays running: each test starts its own browser with a fresh
#   profile and closes it.
set -euo pipefail
cd "$(dirname "$0")/../.."

SRC="tests/support/browser"
DIR="${TARGET_DIR:-target}/test-services"
BDIR="$DIR/browser"
CHROMIUM="/usr/bin/chromium"

say() { echo "chromium.sh: $*" >&2; }

check_node() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        say "Node.js (node and npm, version 20 or later) is required for the browser suite"
        exit 1
    fi
}

install_chromium() {
    [[ -x "$CHROMIUM" ]] && return
    say "installing Debian chromium with apt"
    local sudo=""
    [[ "$(id -u)" != 0 ]] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >&2 || true
    $sudo apt-get install -y -qq --no-install-recommends chromium >&2
    [[ -x "$CHROMIUM" ]] || { say "apt did not install $CHROMIUM"; exit 1; }
}

install_npm() {
    mkdir -p "$BDIR"
    local lockhash stamp
    lockhash="$(sha256sum "$SRC/package-lock.json" | cut -d' ' -f1)"
    stamp="$BDIR/.installed-$lockhash"
    if [[ ! -f "$stamp" || ! -d "$BDIR/node_modules/playwright-core" || ! -d "$BDIR/node_modules/axe-core" ]]; then
        say "installing playwright-core and axe-core (npm ci) into $BDIR"
        rm -rf "$BDIR/node_modules" "$BDIR"/.installed-*
        cp "$SRC/package.json" "$SRC/package-lock.json" "$BDIR/"
        (cd "$BDIR" && npm ci --ignore-scripts --no-audit --no-fund --prefer-offline \
            --loglevel=error >&2)
        touch "$stamp"
    fi
}

up() {
    check_node
    install_chromium
    install_npm
    echo "TEST_BROWSER_URL=file://$(cd "$BDIR" && pwd)"
}

case "${1:-}" in
    up) up ;;
    down) ;;
    env)
        if [[ -x "$CHROMIUM" && -d "$BDIR/node_modules/playwright-core" ]]; then
            echo "TEST_BROWSER_URL=file://$(cd "$BDIR" && pwd)"
        else
            say "not installed (run: $0 up)"
            exit 1
        fi
        ;;
    *)
        echo "usage: $0 up|down|env" >&2
        exit 2
        ;;
esac
