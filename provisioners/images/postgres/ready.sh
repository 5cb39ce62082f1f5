#!/bin/sh
# Exit 0 once the server accepts connections (local socket, no credentials needed).
exec pg_isready -q -h /run/postgresql -p 5432 -t 3
