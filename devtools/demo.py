"""Demo data: three institutions, a focal point each, one operator, one auditor."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from sqlalchemy import select

from controlplane.audit import trail as audit
from controlplane.core.extensions import db
from controlplane.core.models import Institution
from provisioners.directory import tree as directory

INSTITUTIONS = [
    ("MINISANTE", "Ministère de la Santé Publique et de la Lutte contre le Sida",
     "minisante.gov.bi", "ministry"),
    ("OBR", "Office Burundais des Recettes", "obr.gov.bi", "agency"),
    ("CHUK", "Centre Hospitalo-Universitaire de Kamenge", "chuk.gov.bi", "hospital"),
]
PEOPLE = [
    # uid, full name, role, institution
    ("a.ndayishimiye", "Aline Ndayishimiye", "focal_point", "MINISANTE"),
    ("j.niyonzima", "Jean Niyonzima", "focal_point", "OBR"),
    ("c.irakoze", "Claudine Irakoze", "focal_point", "CHUK"),
    ("e.hakizimana", "Eric Hakizimana", "operator", None),
    ("g.nshimirimana", "Grace Nshimirimana", "auditor", None),
]


def ensure_institution(cfg: directory.DirectoryConfig, acronym: str, name: str, domain: str,
                       category: str) -> Institution:
    """Create or re-assert an institution in the directory and the database."""
    directory.ensure_institution(cfg, acronym, name)
    inst = db.session.scalar(select(Institution).where(Institution.acronym == acronym))
    if inst is None:
        inst = Institution(acronym=acronym, name=name, domain=domain, category=category)
        db.session.add(inst)
        db.session.flush()
        audit.record("institution.created", inst,
                     after={"acronym": acronym, "domain": domain, "category": category})
    return inst


def load(cfg: directory.DirectoryConfig, instance: Path) -> list[tuple[str, str, str]] | None:
    """Load the demo once; return (login, role, password) the first time, None afterwards."""
    marker = instance / "demo-loaded"
    directory.ensure_tree(cfg)
    for acronym, name, domain, category in INSTITUTIONS:
        ensure_institution(cfg, acronym, name, domain, category)
    db.session.commit()
    if marker.exists():
        return None
    logins = []
    for uid, full_name, role, institution in PEOPLE:
        password = secrets.token_urlsafe(9)
        mail_domain = next((d for a, _n, d, _c in INSTITUTIONS if a == institution), "setic.gov.bi")
        directory.ensure_person(cfg, uid=uid, full_name=full_name, mail=f"{uid}@{mail_domain}",
                                password=password, role=role, institution=institution)
        logins.append((uid, role if not institution else f"{role} ({institution})", password))
    fd = os.open(instance / "demo-logins.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        for uid, role, password in logins:
            fh.write(f"{uid}\t{role}\t{password}\n")
    marker.write_text("1\n")
    return logins
