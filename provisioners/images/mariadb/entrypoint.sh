#!/bin/bash
# Initialise the data directory on the first start, then run mariadbd in the foreground.
#
# Environment (read once, at initialisation):
#   MARIADB_ADMIN_PASSWORD  optional password for root@localhost, in addition to the
#                           unix_socket authentication of root and mysql (docker exec).
# The password reaches the server on stdin of a client, never on a command line.
set -euo pipefail
umask 077

data=/var/lib/mysql/data
staging=/var/lib/mysql/data.init
mkdir -p /run/mysqld /var/lib/mysql/tmp
find /var/lib/mysql/tmp -mindepth 1 -delete

sql_literal() {  # escape for a single-quoted MariaDB string literal
    local s=${1//\\/\\\\}
    s=${s//$'\n'/\\n}
    printf "'%s'" "${s//\'/\\\'}"
}

if [ ! -d "$data/mysql" ]; then
    # Initialise beside the target and rename at the end: an interrupted first start
    # leaves only the staging directory, which the next start discards.
    rm -rf "$staging"
    # --user=mysql: besides root, the mysql OS user gets a unix_socket admin account.
    mariadb-install-db --datadir="$staging" --user=mysql --auth-root-authentication-method=socket \
        --skip-test-db --skip-name-resolve >/dev/null
    if [ -n "${MARIADB_ADMIN_PASSWORD:-}" ]; then
        # A private server (no network, its own socket: db-ready stays false meanwhile).
        mariadbd --datadir="$staging" --skip-networking --socket=/tmp/init.sock \
            --pid-file=/tmp/init.pid &
        pid=$!
        for _ in $(seq 1 300); do
            mariadb-admin --protocol=socket --socket=/tmp/init.sock ping --silent >/dev/null 2>&1 \
                && break
            kill -0 "$pid" 2>/dev/null || { echo "comgov-mariadb: set-up server died" >&2; exit 1; }
            sleep 0.1
        done
        printf 'ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD(%s);\n' \
            "$(sql_literal "$MARIADB_ADMIN_PASSWORD")" \
            | mariadb --protocol=socket --socket=/tmp/init.sock -u mysql
        mariadb-admin --protocol=socket --socket=/tmp/init.sock -u mysql shutdown
        wait "$pid"
    fi
    mv "$staging" "$data"
    echo "comgov-mariadb: initialised $data"
fi
unset MARIADB_ADMIN_PASSWORD

exec mariadbd "$@"
