#!/bin/sh
# Initialise the cluster on the first start, then run postgres in the foreground as PID 1.
#
# Environment (read once, at initialisation):
#   POSTGRES_ADMIN_PASSWORD  optional password of the "postgres" superuser (first line only).
#                            Without it the superuser has none and can only log in through
#                            the local socket as the postgres OS user (docker exec).
# The password goes to initdb through a 0600 file on the /tmp tmpfs, never on a command line.
set -eu
umask 077

mkdir -p /run/postgresql

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    # Initialise beside the target and rename at the end: an interrupted first start
    # leaves only the .init directory, which the next start discards.
    staging="$PGDATA.init"
    rm -rf "$staging"
    pwfile=""
    if [ -n "${POSTGRES_ADMIN_PASSWORD:-}" ]; then
        pwfile=$(mktemp /tmp/pgpass.XXXXXX)
        printf '%s\n' "$POSTGRES_ADMIN_PASSWORD" > "$pwfile"   # printf is a shell builtin
    fi
    initdb --pgdata="$staging" --username=postgres --encoding=UTF8 --locale=C.UTF-8 \
        --data-checksums --auth-local=peer --auth-host=scram-sha-256 \
        ${pwfile:+--pwfile="$pwfile"} >/dev/null
    [ -z "$pwfile" ] || rm -f "$pwfile"
    # Clients come through the Docker bridge (published port or institution network).
    printf '%s\n' '# comgov: any address, password (SCRAM) only' \
        'host    all    all    0.0.0.0/0    scram-sha-256' \
        'host    all    all    ::/0         scram-sha-256' >> "$staging/pg_hba.conf"
    mv "$staging" "$PGDATA"
    echo "comgov-postgres: initialised $PGDATA"
fi
unset POSTGRES_ADMIN_PASSWORD

exec postgres -D "$PGDATA" \
    -c listen_addresses='*' \
    -c unix_socket_directories=/run/postgresql \
    -c password_encryption=scram-sha-256 \
    -c logging_collector=off \
    "$@"
