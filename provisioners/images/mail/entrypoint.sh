#!/bin/bash
# Run the Postfix and Dovecot masters side by side as PID 1's children; when either exits,
# stop the other and exit so Docker's restart policy brings the whole platform back.
set -euo pipefail

CONF=/etc/comgov-mail
TLS=/run/comgov-mail/tls

if [ ! -s "$CONF/postfix/main.cf" ] || [ ! -s "$CONF/dovecot/dovecot.conf" ]; then
    echo "comgov-mail: no configuration in $CONF (written by provisioners/mail.py)" >&2
    exit 78
fi

# Writable state on tmpfs (the root filesystem is read-only).
# chmod before chown: root may chmod only what it owns (no FOWNER capability).
install -d -m 0755 /run/comgov-mail /run/dovecot /var/lib/dovecot
mkdir -p -m 0700 /var/lib/postfix
chown postfix:postfix /var/lib/postfix
install -d -m 0700 "$TLS"

# Secrets arrive 0600 root; Postfix's proxymap (user postfix) must read its LDAP maps.
chgrp postfix "$CONF"/postfix/ldap-*.cf
chmod 0640 "$CONF"/postfix/ldap-*.cf

# A certificate from the configuration volume, or a self-signed one for this run.
if [ -s "$CONF/tls/cert.pem" ] && [ -s "$CONF/tls/key.pem" ]; then
    install -m 0644 "$CONF/tls/cert.pem" "$TLS/cert.pem"
    install -m 0600 "$CONF/tls/key.pem" "$TLS/key.pem"
else
    (umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days 825 \
        -subj "/CN=${MAIL_HOSTNAME:-localhost}" -keyout "$TLS/key.pem" -out "$TLS/cert.pem" \
        2>/dev/null)
    chmod 0644 "$TLS/cert.pem"
fi

dovecot_pid=
postfix_pid=
stop_all() {
    trap - TERM INT
    postfix stop >/dev/null 2>&1 || true
    [ -n "$dovecot_pid" ] && kill -TERM "$dovecot_pid" 2>/dev/null || true
}
trap stop_all TERM INT

dovecot -F &
dovecot_pid=$!
postfix start-fg &
postfix_pid=$!

status=0
wait -n "$dovecot_pid" "$postfix_pid" || status=$?
echo "comgov-mail: a master exited (status $status); stopping the other" >&2
stop_all
wait || true
exit "$status"
