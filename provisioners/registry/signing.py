"""The token-signing key, the self-signed certificate the registry trusts, and the JWTs.

The registry (distribution 2.8, `registry/auth/token`) verifies a bearer token by its header:
with `x5c` it checks the certificate chain against `auth.token.rootcertbundle` and the signature
with the leaf certificate's key; `kid` would be a libtrust fingerprint in 2.8 and an RFC 7638
thumbprint in 3.x, so we send `x5c` only, which both understand. It then checks `iss` (the
configured issuer), `aud` (the configured service, a plain string in 2.8), `exp`/`nbf` (60 s of
leeway) and grants what `access` lists, nothing more.
"""
from __future__ import annotations

import base64
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ALGORITHM = "ES256"  # ECDSA P-256: small tokens, fast signing, understood by libtrust and jose
KEY_FILE = "token.key"
CERT_FILE = "token.crt"
CERT_YEARS = 10


@dataclass(frozen=True)
class SigningMaterial:
    """Where the private key (0600, the control plane's) and the certificate (the registry's
    `rootcertbundle`) are."""

    key_path: Path
    cert_path: Path


def material_paths(auth_dir: Path) -> SigningMaterial:
    auth_dir = Path(auth_dir)
    return SigningMaterial(auth_dir / KEY_FILE, auth_dir / CERT_FILE)


def ensure_signing_material(auth_dir: Path, common_name: str = "comgov-registry-token"
                            ) -> SigningMaterial:
    """Create the key and its self-signed certificate once; later calls keep them as they are.

    Returns the paths. A key without its certificate (or the reverse) is an error, never
    silently replaced: the registry would stop trusting tokens signed by the old key.
    """
    paths = material_paths(auth_dir)
    have_key, have_cert = paths.key_path.exists(), paths.cert_path.exists()
    if have_key and have_cert:
        return paths
    if have_key or have_cert:
        raise RuntimeError(f"{paths.key_path} and {paths.cert_path} must exist together; "
                           "remove the one left to generate a new pair")
    Path(auth_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365 * CERT_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write(paths.key_path, key_pem, 0o600)
    _write(paths.cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return paths


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write through a temporary file created with its final mode, then rename."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Signer:
    """A loaded key and certificate; `sign` makes a registry token."""

    key: ec.EllipticCurvePrivateKey
    cert_der_b64: str  # the certificate for the x5c header (standard base64 of DER)

    @classmethod
    def load(cls, paths: SigningMaterial) -> Signer:
        key = serialization.load_pem_private_key(Path(paths.key_path).read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{paths.key_path} is not an EC private key")
        cert = x509.load_pem_x509_certificate(Path(paths.cert_path).read_bytes())
        if cert.public_key().public_numbers() != key.public_key().public_numbers():
            raise ValueError(f"{paths.cert_path} does not certify the key {paths.key_path}")
        der = cert.public_bytes(serialization.Encoding.DER)
        return cls(key=key, cert_der_b64=base64.b64encode(der).decode("ascii"))

    def sign(self, *, issuer: str, audience: str, subject: str, access: list[dict],
             ttl: int, now: float | None = None) -> Token:
        """A signed JWT granting exactly `access` (a list of {type, name, actions})."""
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": issuer, "sub": subject, "aud": audience,
            "exp": issued + int(ttl), "nbf": issued, "iat": issued,
            "jti": uuid.uuid4().hex, "access": access,
        }
        text = jwt.encode(claims, self.key, algorithm=ALGORITHM,
                          headers={"typ": "JWT", "x5c": [self.cert_der_b64]})
        return Token(text=text, issued_at=issued, expires_in=int(ttl), claims=claims)


@dataclass(frozen=True)
class Token:
    text: str
    issued_at: int  # Unix time
    expires_in: int  # seconds
    claims: dict

    def response(self) -> dict:
        """The token endpoint's JSON body (both names, as the spec allows clients to use either)."""
        stamp = datetime.fromtimestamp(self.issued_at, timezone.utc)
        return {"token": self.text, "access_token": self.text, "expires_in": self.expires_in,
                "issued_at": stamp.strftime("%Y-%m-%dT%H:%M:%SZ")}
