#!/usr/bin/env bash
# Bring a Debian 12 machine to the point where `make run` and `make test` work:
# system packages, the virtualenv, the project and its pinned dependencies,
# compiled translations. Idempotent; a second run takes a second or two.
set -euo pipefail

cd "$(dirname "$0")/.."

PACKAGES=(docker.io redis-server slapd ldap-utils debootstrap docker-registry skopeo
          python3-venv python3-dev gcc curl ca-certificates
          postgresql-client mariadb-client)
VENV=.venv
STAMP="$VENV/.bootstrap-stamp"

step() { printf '==> %s\n' "$*"; }

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "bootstrap: not root and sudo is missing; cannot install Debian packages" >&2
    exit 1
fi

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]
}

# --- Debian packages -------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
    step "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Package scripts must not start services (no init system in CI containers,
    # and we start our own dockerd/redis/slapd): policy-rc.d answers "forbidden".
    created_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    cleanup_policy() {
        if [ -n "$created_policy" ]; then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; fi
    }
    trap cleanup_policy EXIT
    # slapd: no default database (we run our own from a plain config file),
    # so its postinst neither prompts nor configures anything.
    echo "slapd slapd/no_configuration boolean true" | "${SUDO[@]}" debconf-set-selections
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" >/dev/null
    cleanup_policy
    trap - EXIT
else
    step "Debian packages present"
fi

# --- virtualenv ------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    step "creating $VENV"
    python3 -m venv "$VENV"
    rm -f "$STAMP"
fi

# --- project and pinned dependencies ---------------------------------------
if [ -f "$STAMP" ] && [ "$STAMP" -nt setup.cfg ] && [ "$STAMP" -nt requirements.txt ] \
        && [ "$STAMP" -nt pyproject.toml ]; then
    step "Python dependencies up to date"
else
    step "installing the project and its dependencies into $VENV"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
        "$VENV/bin/pip" install -q -e '.[test]' -c requirements.txt
    touch "$STAMP"
fi

# --- translations ----------------------------------------------------------
if [ -d controlplane/translations ] \
        && [ -n "$(find controlplane/translations -name '*.po' -print -quit)" ]; then
    step "compiling translations"
    "$VENV/bin/pybabel" -q compile -d controlplane/translations
fi

step "bootstrap done"
