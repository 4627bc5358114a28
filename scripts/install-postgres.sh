#!/usr/bin/env bash
# Installs a PostgreSQL server binary set (initdb, pg_ctl, postgres) for the storage tests, which
# start their own throwaway server on 127.0.0.1. Idempotent: does nothing when the binaries exist.
set -euo pipefail
if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    exit 0
fi
for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
        exit 0
    fi
done
if [ "$(id -u)" != "0" ]; then
    echo "install-postgres: run as root, or install Debian's 'postgresql' package yourself" >&2
    exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
