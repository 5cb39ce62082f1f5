"""A small client of the registry's HTTP API (v2): catalog, tags, manifest digest and size,
delete by digest.

It never logs in: the caller gives a bearer token, or a function that returns one for the scope
a call needs (`registry:catalog:*`, `repository:<name>:pull`, `repository:<name>:delete`), so
the control plane can mint exactly the access each call needs. Usage::

    api = RegistryClient("http://127.0.0.1:5001", token_for)
    api.tags("minisante/portail")                 # ["1.0", "1.1"]
    info = api.manifest("minisante/portail", "1.1")
    api.delete("minisante/portail", info.digest)
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin

import requests

# distribution's reference grammar: path components joined by "/", a tag, or a digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
MAX_REPOSITORY = 255

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = ", ".join((MANIFEST_V2, MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX))
MAX_MANIFEST = 4 * 1024 * 1024  # distribution's own limit for a manifest body
MAX_PAGES = 1000

TokenSource = str | Callable[[str], str]


class RegistryError(Exception):
    """The registry answered with an error (or not at all)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class ManifestInfo:
    repository: str
    reference: str
    digest: str  # sha256:… of the manifest as stored (what a pull by digest names)
    media_type: str
    # Bytes: the manifest, its config and its layers (compressed, as stored); for a list or
    # index, the manifest and the manifests it lists (their layers are not added up).
    size: int


def check_repository(name: str) -> str:
    if not isinstance(name, str) or len(name) > MAX_REPOSITORY or not REPOSITORY_RE.fullmatch(name):
        raise ValueError(f"invalid repository name {name!r}")
    return name


def check_reference(reference: str) -> str:
    if not isinstance(reference, str) or not (TAG_RE.fullmatch(reference)
                                              or DIGEST_RE.fullmatch(reference)):
        raise ValueError(f"invalid tag or digest {reference!r}")
    return reference


class RegistryClient:
    def __init__(self, base_url: str, token: TokenSource, *, timeout: float = 15.0,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self._token = token
        self.timeout = timeout
        self.session = session or requests.Session()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- calls ---------------------------------------------------------------------------
    def ping(self) -> int:
        """The status of GET /v2/ without a token (401 from a registry with token auth)."""
        try:
            return self.session.get(urljoin(self.base_url, "v2/"), timeout=self.timeout).status_code
        except requests.RequestException as exc:
            raise RegistryError(f"registry unreachable: {exc}") from exc

    def catalog(self, page_size: int = 100) -> list[str]:
        """Every repository name, following the registry's pagination."""
        return self._paged(f"v2/_catalog?n={int(page_size)}", "registry:catalog:*",
                           "repositories")

    def tags(self, repository: str) -> list[str]:
        """The tags of a repository ([] when it does not exist)."""
        check_repository(repository)
        try:
            return self._paged(f"v2/{repository}/tags/list", f"repository:{repository}:pull",
                               "tags")
        except RegistryError as exc:
            if exc.status == 404:
                return []
            raise

    def manifest_document(self, repository: str, reference: str
                          ) -> tuple[str, dict, int, str]:
        """(digest, document, length, media type) of a tag's or digest's manifest; the digest is
        computed from the body (and must match the registry's header and a digest reference)."""
        check_repository(repository)
        check_reference(reference)
        resp = self._request("GET", f"v2/{repository}/manifests/{reference}",
                             f"repository:{repository}:pull", headers={"Accept": ACCEPT},
                             stream=True)
        try:
            body = resp.raw.read(MAX_MANIFEST + 1, decode_content=True)
        finally:
            resp.close()
        if len(body) > MAX_MANIFEST:
            raise RegistryError(f"manifest of {repository}:{reference} is too large")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        header = resp.headers.get("Docker-Content-Digest")
        if header and header != digest:
            raise RegistryError(f"manifest digest mismatch for {repository}:{reference}")
        if DIGEST_RE.fullmatch(reference) and reference != digest:
            raise RegistryError(f"manifest of {repository}@{reference} has another digest")
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise RegistryError(f"manifest of {repository}:{reference} is not JSON") from exc
        if not isinstance(doc, dict):
            raise RegistryError(f"manifest of {repository}:{reference} is not an object")
        media_type = doc.get("mediaType") or resp.headers.get("Content-Type", "").split(";")[0]
        return digest, doc, len(body), media_type

    def manifest(self, repository: str, reference: str) -> ManifestInfo:
        """Digest, media type and size of a tag's (or digest's) manifest."""
        digest, doc, length, media_type = self.manifest_document(repository, reference)
        parts = [doc.get("config") or {}] + list(doc.get("layers") or []) + \
            list(doc.get("manifests") or [])
        size = length + sum(int(p.get("size") or 0) for p in parts if isinstance(p, dict))
        return ManifestInfo(repository=repository, reference=reference, digest=digest,
                            media_type=media_type, size=size)

    def delete(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest (every tag pointing at it goes with it)."""
        check_repository(repository)
        if not DIGEST_RE.fullmatch(digest or ""):
            raise ValueError(f"delete needs a digest, got {digest!r}")
        self._request("DELETE", f"v2/{repository}/manifests/{digest}",
                      f"repository:{repository}:delete", expected=(202,))

    # --- plumbing ------------------------------------------------------------------------
    def _bearer(self, scope: str) -> str:
        return self._token(scope) if callable(self._token) else self._token

    def _request(self, method: str, path: str, scope: str, *, expected=(200,),
                 **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self._bearer(scope)}", **kwargs.pop("headers", {})}
        url = urljoin(self.base_url, path)
        try:
            resp = self.session.request(method, url, headers=headers, timeout=self.timeout,
                                        allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise RegistryError(f"registry unreachable: {exc}") from exc
        if resp.status_code not in expected:
            code, message = _error_of(resp)
            resp.close()
            raise RegistryError(f"{method} {path}: {resp.status_code} {code or ''} {message}"
                                .strip(), status=resp.status_code, code=code)
        return resp

    def _paged(self, path: str, scope: str, key: str) -> list[str]:
        found: list[str] = []
        for _ in range(MAX_PAGES):
            resp = self._request("GET", path, scope)
            try:
                found += list(resp.json().get(key) or [])
            except ValueError as exc:
                raise RegistryError(f"GET {path}: not JSON") from exc
            nxt = resp.links.get("next", {}).get("url")
            if not nxt:
                return found
            path = nxt.lstrip("/")
        raise RegistryError(f"GET {path}: more than {MAX_PAGES} pages")


def _error_of(resp: requests.Response) -> tuple[str | None, str]:
    """The first error of the registry's JSON body, if it has one."""
    try:
        errors = resp.json().get("errors") or []
        first = errors[0]
        return str(first.get("code") or ""), str(first.get("message") or "")
    except (ValueError, AttributeError, IndexError, TypeError):
        return None, resp.reason or ""
