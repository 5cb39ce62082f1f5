#!/bin/sh
# Write the user tables for the site's login to /run, make the host keys once, run sshd.
#   SFTP_USER       svc-<service id> (not a secret)
#   /etc/ssh/keys/password.hash   SHA-512 crypt hash, 0600, written by provisioners/sftp.py
set -eu

KEYS=/etc/ssh/keys
AUTH=/run/comgov-sftp
CONTENT_ID=2000

fail() { echo "comgov-sftp: $*" >&2; exit 78; }

user="${SFTP_USER:-}"
case "${user#svc-}" in
    ''|*[!0-9]*) fail "SFTP_USER must be svc-<digits>, not '$user'" ;;
esac
[ "$user" = "svc-${user#svc-}" ] || fail "SFTP_USER must be svc-<digits>, not '$user'"

[ -s "$KEYS/password.hash" ] || fail "no password hash in $KEYS (written by provisioners/sftp.py)"
hash=$(cat "$KEYS/password.hash")
case "$hash" in
    '$6$'*) ;;
    *) fail "the password hash is not a SHA-512 crypt hash" ;;
esac
case "$hash" in
    *[!./0-9A-Za-z\$]*) fail "the password hash has characters outside the crypt alphabet" ;;
esac

umask 077
install -d -m 0755 /run/sshd "$AUTH"  # /run/sshd: the privilege separation chroot

# The user tables first: ssh-keygen and sshd look users up by uid.
{ cat /etc/passwd.base
  echo "$user:x:$CONTENT_ID:$CONTENT_ID:website content:/site:/usr/sbin/nologin"
} > "$AUTH/passwd.new"
chmod 0644 "$AUTH/passwd.new"
mv "$AUTH/passwd.new" "$AUTH/passwd"
{ cat /etc/shadow.base
  echo "$user:$hash:::::::"
} > "$AUTH/shadow.new"
mv "$AUTH/shadow.new" "$AUTH/shadow"

# Host keys: made at the first start, then kept in the volume so clients see the same key.
for type in ed25519 ecdsa; do  # RSA would cost up to a second of CPU per new site
    key="$KEYS/ssh_host_${type}_key"
    if [ ! -s "$key" ] || [ ! -s "$key.pub" ]; then
        rm -f "$key.new" "$key.new.pub"
        ssh-keygen -q -t "$type" -N '' -C "" -f "$key.new"
        mv "$key.new.pub" "$key.pub"
        mv "$key.new" "$key"
    fi
done

exec /usr/sbin/sshd -D -e -o "AllowUsers=$user"
