"""Service credentials encrypted at rest (Fernet); the key comes from configuration."""
from __future__ import annotations

import os
import secrets as pysecrets
import string
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app
from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import Secret, Service, utcnow

ALPHABET = string.ascii_letters + string.digits


def generate_password(length: int = 24) -> str:
    """Letters and digits only: safe in URLs, SQL literals and config files alike."""
    return "".join(pysecrets.choice(ALPHABET) for _ in range(length))


def _fernet() -> Fernet:
    key = current_app.config.get("SECRETS_KEY")
    if not key:
        path = Path(current_app.instance_path) / "secrets.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(Fernet.generate_key())
        key = path.read_bytes().strip()
        current_app.config["SECRETS_KEY"] = key
    return Fernet(key)


def put(service: Service, name: str, value: str) -> Secret:
    """Store (or replace) a credential; the caller commits with the change it belongs to."""
    token = _fernet().encrypt(value.encode("utf-8"))
    secret = db.session.scalar(select(Secret).where(Secret.service_id == service.id,
                                                    Secret.name == name))
    if secret is None:
        secret = Secret(service_id=service.id, name=name, ciphertext=token)
        db.session.add(secret)
    else:
        secret.ciphertext = token
        secret.rotated_at = utcnow()
    return secret


def get(service: Service, name: str) -> str | None:
    secret = db.session.scalar(select(Secret).where(Secret.service_id == service.id,
                                                    Secret.name == name))
    if secret is None:
        return None
    try:
        return _fernet().decrypt(secret.ciphertext).decode("utf-8")
    except InvalidToken:
        raise RuntimeError("secret cannot be decrypted: SECRETS_KEY changed?") from None


def forget(service: Service, name: str | None = None) -> None:
    """Drop one credential (or all of the service's); the caller commits."""
    query = select(Secret).where(Secret.service_id == service.id)
    if name is not None:
        query = query.where(Secret.name == name)
    for secret in db.session.scalars(query):
        db.session.delete(secret)


def encrypt(text: str) -> str:
    """For settings that may hold secrets (an application's environment), kept in JSON."""
    return _fernet().encrypt(text.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise RuntimeError("secret cannot be decrypted: SECRETS_KEY changed?") from None
