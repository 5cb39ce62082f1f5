"""Policy texts through the control plane's gettext catalogs, without Flask.

Message ids are English with named placeholders (`%(name)s`); the French and English
translations live in controlplane/translations, the catalogs Flask-Babel reads too, compiled
to .mo by scripts/bootstrap.sh (`make translations` extracts the ids, see babel.cfg). A
missing catalog or message gives the English id: a text is never lost, only untranslated.
"""
from __future__ import annotations

import math
from functools import lru_cache
from gettext import NullTranslations
from pathlib import Path
from typing import Any, Callable

from babel import Locale
from babel.support import Translations

from policies.vocabulary import _lang

CATALOGS = Path(__file__).resolve().parents[1] / "controlplane" / "translations"
DOMAIN = "messages"


def _p(context: str, message: str) -> tuple[str, str]:
    """Marks a message with its context for extraction (babel.cfg keyword); translated later."""
    return context, message


def _np(context: str, singular: str, plural: str) -> tuple[str, str, str]:
    """Marks a message with its context and plural for extraction; translated later."""
    return context, singular, plural


@lru_cache(maxsize=None)
def _catalog(lang: str) -> NullTranslations:
    """Loaded once per language; without a compiled catalog, NullTranslations (English ids)."""
    return Translations.load(str(CATALOGS), [lang], domain=DOMAIN)


@lru_cache(maxsize=None)
def _plural_rule(lang: str) -> Callable[[float], str]:
    return Locale.parse(lang).plural_form


@lru_cache(maxsize=None)
def _sample(lang: str, category: str) -> int | None:
    """The smallest whole number in a CLDR plural category of `lang`, if one is below 1000."""
    rule = _plural_rule(lang)
    return next((n for n in range(1000) if rule(n) == category), None)


def _fill(text: str, english: str, values: dict[str, Any]) -> str:
    """`text` with its placeholders filled; a translation that does not fit gives the English."""
    try:
        return text % values
    except (KeyError, ValueError, TypeError):
        return english % values


class Texts:
    """The policy messages of one language: look a message up, then fill its placeholders.

    Call sites name their message ids literally (t.gettext("..."), t.npgettext("ctx", ...))
    so that pybabel finds them. `catalog` replaces the language's compiled one (tests).
    """

    def __init__(self, lang: str, catalog: NullTranslations | None = None) -> None:
        self.lang = lang
        self._catalog = _catalog(lang) if catalog is None else catalog

    def gettext(self, message: str, **values: Any) -> str:
        return _fill(self._catalog.gettext(message), message, values)

    def ngettext(self, singular: str, plural: str, count: int, **values: Any) -> str:
        english = singular if count == 1 else plural
        return _fill(self._catalog.ngettext(singular, plural, count), english, values)

    def pgettext(self, context: str, message: str, **values: Any) -> str:
        return _fill(self._catalog.pgettext(context, message), message, values)

    def npgettext(self, context: str, singular: str, plural: str, count: int,
                  **values: Any) -> str:
        english = singular if count == 1 else plural
        return _fill(self._catalog.npgettext(context, singular, plural, count), english, values)

    def count(self, number: float) -> int:
        """The whole number that picks the plural form of `number` as it is shown.

        gettext plural formulas only know whole numbers; for a decimal, the CLDR plural
        category decides ("1,5 Gio restant" is singular in French, "1.5 cores" plural in
        English) and a whole number of the same category stands for it.
        """
        number = abs(float(number))
        if math.isfinite(number) and number.is_integer():
            return int(number)
        # inf and nan have no CLDR category: take the general one.
        category = _plural_rule(self.lang)(number) if math.isfinite(number) else "other"
        sample = _sample(self.lang, category)
        return sample if sample is not None else 2


@lru_cache(maxsize=None)
def _texts(lang: str) -> Texts:
    return Texts(lang)


def texts(locale: str | None) -> Texts:
    """The messages for `locale` ('fr', 'fr_BI', 'en-GB'...; French when unknown), cached."""
    return _texts(_lang(locale))
