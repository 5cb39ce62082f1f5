"""Monthly usage statements per institution, in billing units, as CSV and PDF."""
from __future__ import annotations

import calendar
import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select

from controlplane.core.extensions import db
from controlplane.core.models import Institution, Mailbox, Service, UsageRollup

GIB = 1024 ** 3
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@dataclass
class Line:
    label: str
    kind: str
    cpu_hours: float = 0.0
    memory_gib_months: float = 0.0
    disk_gib_months: float = 0.0
    network_gib: float = 0.0


@dataclass
class Statement:
    institution: Institution
    year: int
    month: int
    lines: list[Line] = field(default_factory=list)
    mailboxes: int = 0

    @property
    def total(self) -> Line:
        t = Line("TOTAL", "")
        for line in self.lines:
            t.cpu_hours += line.cpu_hours
            t.memory_gib_months += line.memory_gib_months
            t.disk_gib_months += line.disk_gib_months
            t.network_gib += line.network_gib
        return t

    @property
    def period(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def parse_month(value: str) -> tuple[int, int]:
    """'2026-11' -> (2026, 11); ValueError with a clear message otherwise."""
    try:
        parsed = datetime.strptime(value.strip(), "%Y-%m")
    except (ValueError, AttributeError):
        raise ValueError(f"month must look like 2026-11, got {value!r}") from None
    return parsed.year, parsed.month


def build(institution: Institution, year: int, month: int) -> Statement:
    """Sum the month's daily rollups per service into billing units."""
    start = datetime(year, month, 1)
    days = calendar.monthrange(year, month)[1]
    end = datetime(year + (month == 12), month % 12 + 1, 1)
    month_seconds = days * 86400
    rows = db.session.execute(
        select(UsageRollup.service_id, func.sum(UsageRollup.cpu_seconds),
               func.sum(UsageRollup.memory_byte_seconds), func.sum(UsageRollup.disk_byte_seconds),
               func.sum(UsageRollup.net_rx + UsageRollup.net_tx))
        .where(UsageRollup.period == "day", UsageRollup.institution_id == institution.id,
               UsageRollup.start >= start, UsageRollup.start < end)
        .group_by(UsageRollup.service_id).order_by(UsageRollup.service_id)).all()
    statement = Statement(institution, year, month)
    for service_id, cpu, mem, disk, net in rows:
        svc = db.session.get(Service, service_id) if service_id else None
        label = (svc.hostname or svc.name or f"#{svc.id}") if svc else "platform"
        statement.lines.append(Line(
            label=label, kind=svc.kind if svc else "",
            cpu_hours=(cpu or 0) / 3600, memory_gib_months=(mem or 0) / GIB / month_seconds,
            disk_gib_months=(disk or 0) / GIB / month_seconds, network_gib=(net or 0) / GIB))
    statement.mailboxes = db.session.scalar(select(func.count()).select_from(Mailbox).where(
        Mailbox.institution_id == institution.id, Mailbox.is_alias.is_(False),
        Mailbox.created_at < end)) or 0
    return statement


HEADER = ["institution", "period", "service", "kind", "cpu_hours", "memory_gib_months",
          "disk_gib_months", "network_gib"]


def to_csv(statements: list[Statement]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    for st in statements:
        for line in st.lines + [st.total]:
            writer.writerow([st.institution.acronym, st.period, line.label, line.kind,
                             f"{line.cpu_hours:.4f}", f"{line.memory_gib_months:.6f}",
                             f"{line.disk_gib_months:.6f}", f"{line.network_gib:.6f}"])
        writer.writerow([st.institution.acronym, st.period, "mailboxes", "mail", st.mailboxes,
                         "", "", ""])
    return out.getvalue().encode("utf-8")


def to_pdf(statements: list[Statement], titles: dict[str, str]) -> bytes:
    """A4 statement, one page per institution; `titles` holds the translated labels."""
    from fpdf import FPDF  # heavy (fonts, images), needed only for PDF statements

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    if FONT.exists():
        pdf.add_font("dejavu", fname=str(FONT))
        family = "dejavu"
        text = str
    else:  # core fonts are Latin-1 only
        family = "helvetica"
        text = lambda s: str(s).replace("’", "'").replace("œ", "oe").encode(  # noqa: E731
            "latin-1", "replace").decode("latin-1")
    for st in statements:
        pdf.add_page()
        pdf.set_font(family, size=14)
        pdf.cell(0, 10, text(f"{titles['title']} — {st.institution.acronym} — {st.period}"),
                 new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, size=9)
        pdf.cell(0, 6, text(st.institution.name), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
        widths = (62, 22, 26, 26, 26, 26)
        heads = (titles["service"], titles["kind"], titles["cpu"], titles["memory"],
                 titles["disk"], titles["network"])
        for w, h in zip(widths, heads):
            pdf.cell(w, 7, text(h), border=1)
        pdf.ln()
        for line in st.lines + [st.total]:
            values = (line.label[:40], line.kind, f"{line.cpu_hours:.2f}",
                      f"{line.memory_gib_months:.3f}", f"{line.disk_gib_months:.3f}",
                      f"{line.network_gib:.3f}")
            for w, v in zip(widths, values):
                pdf.cell(w, 6, text(v), border=1)
            pdf.ln()
        pdf.ln(3)
        pdf.cell(0, 6, text(f"{titles['mailboxes']}: {st.mailboxes}"), new_x="LMARGIN",
                 new_y="NEXT")
    return bytes(pdf.output())
