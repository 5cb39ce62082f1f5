"""Policy texts go through the gettext catalogs: every one formats, and the catalogs have them."""
from __future__ import annotations

from gettext import NullTranslations
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, check_and_call_extract_file
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

import policies
from policies import RESOURCES, Reason, UsageWarning
from policies.translation import CATALOGS, Texts

ROOT = Path(__file__).resolve().parents[2]
TITLE = {"fr": "ministère", "en": "ministry"}


def samples(code: str) -> list[Reason]:
    """Reasons with every field a code reads, and each variant its sentence has."""
    full = dict(resource="memory_mib", requested=4096, remaining=1536, quota=8192,
                plan="ministry", plan_title=TITLE, detail="XL", choices=("S", "M", "L"),
                minimum=256, maximum=10240)
    if code == "amount_not_whole":
        return [Reason(code, **full), Reason(code, **{**full, "resource": "cpu"})]
    if code == "justification_too_short":
        return [Reason(code, requested=n, minimum=20) for n in (0, 1, 6)]
    variants = [Reason(code, **full)]
    if code in ("unknown_size", "invalid_value"):
        variants.append(Reason(code, **{**full, "detail": "", "minimum": None}))
    if code == "mailbox_size":
        variants.append(Reason(code, **{**full, "requested": None, "detail": "inf"}))
    return variants


@pytest.mark.parametrize("locale", ["fr", "en"])
@pytest.mark.parametrize("code", policies.REASON_CODES)
def test_every_reason_code_formats_without_code_or_placeholder(code, locale):
    for reason in samples(code):
        text = policies.format_reason(reason, locale)
        assert text and code not in text and "%(" not in text and "%%" not in text, text


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_resource_reads_in_both_languages(resource):
    assert policies.resource_label(resource, "fr") != resource
    for locale in ("fr", "en"):
        warning = UsageWarning(resource, used=3, quota=2, percent=None, threshold=90)
        over = Reason("over_plan", resource=resource, requested=3, quota=2, plan="ministry",
                      plan_title=TITLE)
        for text in (policies.format_warning(warning, locale),
                     policies.format_reason(over, locale)):
            assert text.startswith(policies.resource_label(resource, locale)), text
            assert "%(" not in text, text


def test_agreement_and_plural_come_from_the_catalog():
    one = Reason("over_quota", resource="services.postgresql", requested=1, remaining=0, quota=3,
                 plan="ministry", plan_title=TITLE)
    assert policies.format_reason(one, "fr") == \
        "bases PostgreSQL : 1 demandée, 0 restante sur 3 (plan « ministère »)"
    # Decimals follow the CLDR plural rules: singular in French below 2, plural in English.
    assert policies.format_quantity("cpu", 1.5, "fr") == "1,5 cœur"
    assert policies.format_quantity("cpu", 1.5, "en") == "1.5 cores"
    assert policies.format_quantity("memory_mib", 1536, "fr") == "1,5 Gio"
    short = Reason("justification_too_short", requested=1, minimum=20)
    assert policies.format_reason(short, "fr") == \
        "justification : au moins 20 caractères (1 reçu)"


def test_missing_or_broken_translation_falls_back_to_english():
    nowhere = Texts("de")  # no German catalog
    assert nowhere.gettext("end date: %(date)s is already past", date="2026-05-01") == \
        "end date: 2026-05-01 is already past"
    assert nowhere.npgettext("cpu", "%(amount)s left", "%(amount)s left", 2, amount="2") == "2 left"
    assert policies.format_reason(Reason("some_new_code", detail="x"), "fr") == "some_new_code  x"

    class Mistranslated(NullTranslations):
        def npgettext(self, context, singular, plural, n):
            return "%(montant)s restante"

    broken = Texts("fr", Mistranslated())
    assert broken.npgettext("mailboxes", "%(amount)s left", "%(amount)s left", 1, amount="1") \
        == "1 left"


def test_no_language_branches_in_messages():
    source = (ROOT / "policies" / "messages.py").read_text()
    for branch in ('== "fr"', "== 'fr'", '== "en"', "== 'en'", 'lang ==', "_agree("):
        assert branch not in source


def _policy_messages() -> list[tuple[str | None, str, int]]:
    """What `make translations` extracts from policies/, with babel.cfg's keywords."""
    with open(ROOT / "babel.cfg") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    keywords = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
    found = []
    for path in sorted((ROOT / "policies").rglob("*.py")):
        for _file, lineno, message, _comments, context in check_and_call_extract_file(
                path, method_map, options_map, None, keywords, (), False, ROOT):
            found.append((context, message[0] if isinstance(message, tuple) else message, lineno))
    return found


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_catalogs_translate_every_policy_message(lang):
    """The .po files are the source of truth (the .mo are compiled from them at bootstrap)."""
    messages = _policy_messages()
    assert len(messages) > 50
    with open(CATALOGS / lang / "LC_MESSAGES" / "messages.po", "rb") as po:
        catalog = read_po(po)
    missing = []
    for context, msgid, lineno in messages:
        entry = catalog.get(msgid, context)
        strings = () if entry is None else entry.string if isinstance(entry.string, tuple) \
            else (entry.string,)
        if entry is None or entry.fuzzy or not all(strings):
            missing.append((context, msgid, lineno))
    assert missing == []
    problems = [(m.id, errors) for m, errors in catalog.check()
                if any(f.startswith("policies/") for f, _ in m.locations)]
    assert problems == []
