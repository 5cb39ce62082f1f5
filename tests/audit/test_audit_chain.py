"""The audit trail is tamper-evident: each kind of tampering is reported at the right event."""
from __future__ import annotations

import pytest
from sqlalchemy import select, text

from controlplane.audit import trail as audit
from controlplane.core.extensions import db
from controlplane.core.models import AuditEvent, Institution


@pytest.fixture
def sealed(app):
    """Twelve events, sealed; yields the app inside an app context."""
    with app.app_context():
        inst = db.session.scalar(select(Institution))
        for i in range(10):
            audit.record("test.event", inst, after={"n": i, "note": "é"})
        db.session.commit()
        assert audit.seal() >= 10
        yield [e.id for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def test_intact_chain(sealed):
    result = audit.verify()
    assert result.ok and result.checked == len(sealed) and result.unsealed == 0


def test_new_events_are_unsealed_until_sealed(sealed):
    inst = db.session.scalar(select(Institution))
    audit.record("test.later", inst)
    db.session.commit()
    assert audit.verify().unsealed == 1 and audit.verify().ok
    assert audit.seal() == 1 and audit.seal() == 0
    assert audit.verify().unsealed == 0


def test_edit_is_reported(sealed):
    victim = sealed[5]
    db.session.execute(text("UPDATE audit_event SET actor = 'mallory' WHERE id = :id"),
                       {"id": victim})
    db.session.commit()
    result = audit.verify()
    assert not result.ok and result.first_bad_id == victim and result.problem == "edited"


def test_edit_of_json_is_reported(sealed):
    victim = sealed[3]
    db.session.execute(text("UPDATE audit_event SET after = '{\"n\": 99}' WHERE id = :id"),
                       {"id": victim})
    db.session.commit()
    assert audit.verify().first_bad_id == victim


def test_rehashing_the_edited_event_is_still_caught(sealed):
    victim = db.session.get(AuditEvent, sealed[4])
    victim.actor = "mallory"
    victim.hash = audit.event_digest(victim, victim.prev_hash)  # forger recomputes its hash
    db.session.commit()
    result = audit.verify()
    assert not result.ok and result.first_bad_id == sealed[5]


def test_delete_is_reported(sealed):
    db.session.execute(text("DELETE FROM audit_event WHERE id = :id"), {"id": sealed[6]})
    db.session.commit()
    result = audit.verify()
    assert not result.ok and result.first_bad_id == sealed[7] and result.problem == "deleted"


def test_reorder_is_reported(sealed):
    a, b = sealed[2], sealed[3]
    cols = "actor, action, target_type, target_id, institution_id, before, after, at, " \
           "prev_hash, hash"
    rows = {r[0]: r[1:] for r in db.session.execute(text(
        f"SELECT id, {cols} FROM audit_event WHERE id IN (:a, :b)"), {"a": a, "b": b})}
    names = [c.strip() for c in cols.split(",")]
    for target, source in ((a, b), (b, a)):
        db.session.execute(text("UPDATE audit_event SET " + ", ".join(
            f"{n} = :{n}" for n in names) + " WHERE id = :id"),
            dict(zip(names, rows[source]), id=target))
    db.session.commit()
    result = audit.verify()
    assert not result.ok and result.first_bad_id == a and result.problem == "reordered"


def test_truncation_is_reported(sealed):
    db.session.execute(text("DELETE FROM audit_event WHERE id >= :id"), {"id": sealed[-2]})
    db.session.commit()
    result = audit.verify()
    assert not result.ok and result.problem == "truncated"


def test_verify_command_and_page(app, sealed, client, auth):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0 and "intact" in result.output
    db.session.execute(text("UPDATE audit_event SET action = 'x' WHERE id = :id"),
                       {"id": sealed[1]})
    db.session.commit()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1 and f"#{sealed[1]}" in result.output
    auth.login("au.one")
    page = client.get("/audit/verify").get_data(as_text=True)
    assert f"#{sealed[1]}" in page
