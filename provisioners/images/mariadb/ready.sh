#!/bin/sh
# Exit 0 once the server answers on its socket (the first-start set-up server uses another).
exec mariadb-admin --protocol=socket --socket=/run/mysqld/mysqld.sock --connect-timeout=3 \
    ping --silent
