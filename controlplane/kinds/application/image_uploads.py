"""Application images in the registry: `docker save` archives uploaded by focal points and
imported by a worker with skopeo (never `docker load`), what each namespace holds, deletion.

An archive lands in `<REGISTRY_ADDRESS>/<acronym in lowercase>/<name>:<tag>`, whatever names it
claims: `<name>:<tag>` is the last path component and tag of its RepoTags (`comgov/base:bookworm`
becomes `minisante/base:bookworm`), else the name typed on the form. Its layers' unpacked size
is bounded by APP_IMAGE_MAX_UNPACKED_BYTES and by what is left of the institution's registry
quota (plans.yaml `registry_mib`), checked as a stream before skopeo runs.
"""
from __future__ import annotations

import logging
import os
import secrets as pysecrets
from pathlib import Path

from flask import current_app
from flask_babel import force_locale, format_decimal
from flask_babel import gettext as _

from controlplane.audit import trail as audit
from controlplane.core.extensions import db
from controlplane.core.models import Account, Institution, Task
from controlplane.registry import access, tokens
from controlplane.worker import queue
from controlplane.worker.runner import job
from provisioners.application import image_archives
from provisioners.application.image_archives import ArchiveRefused
from provisioners.registry import skopeo
from provisioners.registry.api import DIGEST_RE, REPOSITORY_RE, RegistryError

log = logging.getLogger(__name__)
TASK_KIND = "image_import"


class Refused(ValueError):
    """An upload, import or deletion that is not done; the message is for the user."""


class NotVisible(LookupError):
    """The image is not in a namespace the person may manage (a 404 for focal points)."""


def uploads_dir() -> Path:
    path = Path(current_app.instance_path) / "image-uploads"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _archive_path(task_id: str) -> Path:
    return uploads_dir() / f"{task_id}.tar"


def registry_address() -> str:
    return current_app.config["REGISTRY_ADDRESS"]


def tls_verify() -> bool:
    """skopeo checks TLS unless told otherwise, or the registry is on this machine."""
    setting = current_app.config.get("REGISTRY_TLS_VERIFY")
    if setting is not None:
        return bool(setting)
    return not skopeo.is_loopback(registry_address())


def mib(size: int) -> str:
    return format_decimal(round(size / 2**20, 1))


def _namespace(institution: Institution) -> str:
    namespace = access.namespace_of(institution.acronym)
    if namespace is None:
        raise Refused(_("Your institution has no namespace of its own in the registry."))
    return namespace


def refusal(exc: ArchiveRefused, *, quota_bound: bool = False) -> str:
    """The reason an archive is refused, in the current language."""
    p = exc.params
    if exc.code == "too_large":
        return _("The archive is larger than %(limit)s MiB.", limit=mib(int(p["limit"])))
    if exc.code == "compressed":
        return _("The archive is %(kind)s-compressed: upload the plain .tar written by "
                 "“docker save -o image.tar NAME:VERSION”.", kind=p["kind"])
    if exc.code == "not_tar":
        return _("This file is not a tar archive: upload the .tar written by "
                 "“docker save -o image.tar NAME:VERSION”.")
    if exc.code == "several_images":
        return _("The archive holds %(count)s images: save one image per archive.",
                 count=p["count"])
    if exc.code == "too_many_tags":
        return _("The archive carries more than %(limit)s names.", limit=p["limit"])
    if exc.code == "unpacked_too_large" and quota_bound:
        return _("The image’s layers unpack to more than the %(limit)s MiB left in your "
                 "institution’s registry quota: delete images you no longer need first.",
                 limit=mib(int(p["limit"])))
    if exc.code == "unpacked_too_large":
        return _("The image’s layers unpack to more than %(limit)s MiB, the limit for one "
                 "uploaded image.", limit=mib(int(p["limit"])))
    if exc.code == "layer_format":
        return _("A layer of the image (%(layer)s) cannot be checked (%(kind)s): upload the "
                 "archive exactly as docker save writes it.", layer=p["layer"], kind=p["kind"])
    return _("This is not an image archive written by docker save (%(detail)s).",
             detail=p.get("detail") or str(exc))


def _quota_refusal(use: tokens.NamespaceUse, size: int) -> str:
    return _("This image would exceed your institution’s registry quota: %(used)s MiB used of "
             "%(quota)s MiB, and the archive holds %(size)s MiB. Delete images you no longer "
             "need on this page first.", used=mib(use.used), quota=mib(use.quota or 0),
             size=mib(size))


def _no_name() -> str:
    return _("The archive carries no usable image name: give one on the form (NAME:VERSION, "
             "for example portail:1.0).")


# --------------------------------------------------------------------------- upload

def accept(owner: Account, stream, filename: str, name: str | None = None) -> Task:
    """Store the upload, check it as an archive of one image with a usable name, check the
    registry quota, queue the import. Raises Refused (a ValueError) with a message for the
    user; nothing is kept when it does."""
    institution = owner.institution
    namespace = _namespace(institution)
    name = (name or "").strip() or None
    if name is not None and image_archives.split_name(name) is None:
        raise Refused(_("“%(name)s” is not a valid image name: use NAME:VERSION in lowercase "
                        "letters, digits, . _ -, for example portail:1.0.", name=name[:80]))
    limit = int(current_app.config["APP_IMAGE_MAX_BYTES"])
    task_id = "image-" + pysecrets.token_hex(8)
    path = _archive_path(task_id)
    written = 0
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(1024 * 1024):
                written += len(chunk)
                if written > limit:
                    raise Refused(_("The archive is larger than %(limit)s MiB.",
                                    limit=mib(limit)))
                out.write(chunk)
        try:
            image = image_archives.read_image_archive(path, max_bytes=limit)
        except ArchiveRefused as exc:
            raise Refused(refusal(exc)) from None
        target = image_archives.destination_name(image.tags, name)
        if target is None:
            raise Refused(_no_name())
        try:
            use = tokens.namespace_use(namespace, fresh=True)
        except RegistryError as exc:  # the worker checks again before importing
            log.warning("event=image.quota_unknown namespace=%s error=%s", namespace, exc)
        else:
            if use.quota is not None and use.used + written > use.quota:
                raise Refused(_quota_refusal(use, written))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    repository = f"{namespace}/{target[0]}"
    task = Task(id=task_id, kind=TASK_KIND, owner_id=owner.id, status="queued",
                params={"filename": filename[:200], "tags": list(image.tags), "name": name,
                        "repository": repository, "tag": target[1],
                        "institution_id": owner.institution_id})
    db.session.add(task)
    audit.record("image.uploaded", institution, actor=owner,
                 after={"claimed_tags": list(image.tags), "repository": repository,
                        "tag": target[1], "bytes": written})
    db.session.commit()
    try:
        queue.enqueue_unique(import_archive, task_id, job_id=task_id)
    except queue.QueueUnavailable:
        task.status, task.message = "failed", _("The job queue is unavailable; try again later.")
        db.session.commit()
        path.unlink(missing_ok=True)
    return task


# --------------------------------------------------------------------------- import job

def _locale(task: Task) -> str:
    owner = db.session.get(Account, task.owner_id) if task.owner_id else None
    chosen = getattr(owner, "locale", None)
    if chosen in current_app.config["LANGUAGES"]:
        return chosen
    return current_app.config.get("BABEL_DEFAULT_LOCALE", "fr")


def _import_failed(exc: Exception, task_id: str) -> None:
    task = db.session.get(Task, task_id)
    _archive_path(task_id).unlink(missing_ok=True)
    if task is None:
        return
    with force_locale(_locale(task)):
        task.status = "failed"
        task.message = _("The import into the registry failed; try again or contact the data "
                         "centre.") + f" ({str(exc)[:300]})"
    institution = db.session.get(Institution, task.params.get("institution_id"))
    if institution is not None:
        audit.record("image.import_failed", institution,
                     after={"task": task_id, "error": str(exc)[:300]})


def _push_token(repository: str) -> str:
    """A token for `push,pull` on exactly this repository, valid as long as an import may take
    (REGISTRY_TOKEN_TTL alone could end in the middle of a large one)."""
    cfg = current_app.config
    ttl = max(int(cfg["REGISTRY_TOKEN_TTL"]), int(cfg["APP_IMAGE_IMPORT_TIMEOUT"]))
    access_claim = [{"type": "repository", "name": repository, "actions": ["pull", "push"]}]
    return tokens.signer().sign(issuer=cfg["REGISTRY_ISSUER"], audience=cfg["REGISTRY_SERVICE"],
                                subject=tokens.CONTROL_PLANE_SUBJECT, access=access_claim,
                                ttl=ttl).text


@job(on_failure=_import_failed)
def import_archive(task_id: str) -> str:
    """Check the stored archive again (one image, its layers' unpacked size within the bound
    and the quota), copy it into the institution's namespace with skopeo, delete the file."""
    task = db.session.get(Task, task_id)
    if task is None or task.status not in ("queued", "running"):
        return "gone"
    path = _archive_path(task_id)
    institution = db.session.get(Institution, task.params["institution_id"])
    task.status, task.progress = "running", 10
    db.session.commit()
    with force_locale(_locale(task)):  # refusals are worded for the uploader
        try:
            result = _import(task, institution, path)
        except Refused as exc:
            task.status, task.message = "failed", str(exc)
            audit.record("image.refused", institution,
                         after={"task": task_id, "reason": task.message})
            db.session.commit()
            path.unlink(missing_ok=True)
            log.info("event=image.refused task=%s reason=%r", task_id, task.message)
            return "refused"
    path.unlink(missing_ok=True)
    task.status, task.progress, task.message = "done", 100, result["reference"]
    task.params = {**task.params, "digest": result["digest"]}
    audit.record("image.imported", institution, after=result)
    db.session.commit()
    log.info("event=image.imported task=%s reference=%s digest=%s", task_id,
             result["reference"], result["digest"])
    return "done"


def _import(task: Task, institution: Institution, path: Path) -> dict:
    cfg = current_app.config
    namespace = _namespace(institution)
    use = tokens.namespace_use(namespace, fresh=True)
    room = (use.quota or 0) - use.used
    if room <= 0:
        raise Refused(_quota_refusal(use, path.stat().st_size))
    max_unpacked = int(cfg["APP_IMAGE_MAX_UNPACKED_BYTES"])
    bound = min(max_unpacked, room)
    try:
        image = image_archives.read_image_archive(path, int(cfg["APP_IMAGE_MAX_BYTES"]))
        unpacked = image_archives.unpacked_size(path, image, bound)
    except ArchiveRefused as exc:
        raise Refused(refusal(exc, quota_bound=bound < max_unpacked)) from None
    target = image_archives.destination_name(image.tags, task.params.get("name"))
    if target is None:
        raise Refused(_no_name())
    repository = f"{namespace}/{target[0]}"
    if not REPOSITORY_RE.fullmatch(repository) or repository.split("/")[0] != namespace:
        raise Refused(_no_name())  # impossible by construction; kept as a last guard
    reference = f"{registry_address()}/{repository}:{target[1]}"
    task.progress = 30
    db.session.commit()
    scratch = uploads_dir() / "scratch"
    with skopeo.scratch_space(scratch, unpacked + path.stat().st_size) as tmpdir:
        digest = skopeo.copy_archive(path, reference, token=_push_token(repository),
                                     tls_verify=tls_verify(), tmpdir=tmpdir,
                                     timeout=float(cfg["APP_IMAGE_IMPORT_TIMEOUT"]))
    tokens.forget_usage(namespace)
    return {"reference": reference, "repository": repository, "tag": target[1],
            "digest": digest, "image_id": image.image_id, "claimed_tags": list(image.tags),
            "unpacked_bytes": unpacked}


# --------------------------------------------------------------------------- listing, deletion

def listing(user: Account) -> tuple[list[skopeo.StoredImage], list[tokens.NamespaceUse]]:
    """The images a person sees (a focal point: the institution's namespace; operators: every
    namespace) and each namespace's use against its quota. RegistryError when unreadable."""
    own = _namespace(user.institution) if user.is_focal_point else None
    with tokens.api_client() as client:
        images = skopeo.namespace_images(client, own)
    by_namespace: dict[str, list[skopeo.StoredImage]] = {own: []} if own else {}
    for image in images:
        by_namespace.setdefault(image.namespace, []).append(image)
    uses = []
    for namespace, found in sorted(by_namespace.items()):
        used = skopeo.stored_bytes(found)
        institution = tokens.namespace_institution(namespace)
        quota = tokens.registry_quota(institution) if institution is not None else None
        tokens.remember_usage(namespace, used)
        uses.append(tokens.NamespaceUse(namespace, institution, used, quota))
    return images, uses


def _deletable_namespace(user: Account, repository: str) -> Institution:
    """The institution whose image this is, if `user` may delete it; NotVisible otherwise
    (another institution's, for a focal point) and Refused for the platform's own."""
    if len(repository) > 255 or not REPOSITORY_RE.fullmatch(repository) or "/" not in repository:
        raise NotVisible(repository)
    namespace = repository.split("/", 1)[0]
    if user.is_focal_point:
        if namespace != _namespace(user.institution):
            raise NotVisible(repository)
        return user.institution
    institution = tokens.namespace_institution(namespace)
    if institution is None:
        raise Refused(_("Platform images are not deleted from this page."))
    return institution


def delete(user: Account, repository: str, digest: str) -> list[str]:
    """Delete an image by digest (every tag on it goes with it); audited. The tags removed."""
    institution = _deletable_namespace(user, repository)
    if not DIGEST_RE.fullmatch(digest or ""):
        raise NotVisible(digest)
    with tokens.api_client() as client:
        tags = [tag for tag in client.tags(repository)
                if client.manifest(repository, tag).digest == digest]
        try:
            client.delete(repository, digest)
        except RegistryError as exc:
            if exc.status == 404:
                raise NotVisible(digest) from None
            raise
    tokens.forget_usage(repository.split("/", 1)[0])
    audit.record("image.deleted", institution, actor=user,
                 before={"repository": repository, "digest": digest, "tags": tags})
    db.session.commit()
    log.info("event=image.deleted repository=%s digest=%s by=%s", repository, digest,
             user.username)
    return tags
