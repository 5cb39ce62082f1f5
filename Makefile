# The README promises two commands on a fresh Debian 12 machine: `make run` and `make test`.
# Everything they need is installed by scripts/bootstrap.sh (idempotent, instant when done).

VENV    := .venv
PY      := $(VENV)/bin/python
PLATFORM := $(PY) -m devtools
TRANSLATIONS := controlplane/translations
LANGS   := fr en

.PHONY: bootstrap run test images bench translations clean

bootstrap:
	@bash scripts/bootstrap.sh

## The whole platform with demo data; Ctrl-C stops it.
run: bootstrap
	$(PLATFORM) run

## Build or reuse the Docker images (starts dockerd if needed and leaves it running).
images: bootstrap
	$(PLATFORM) images

## The test suite against real Docker, Redis and slapd (pytest exit 5, no tests, fails too).
## `python -m devtools images` starts dockerd when no engine answers and leaves it running for pytest.
test: bootstrap
	$(PLATFORM) images
	$(VENV)/bin/pytest -q

bench: images
	@set -e; found=; for f in bench/*.py; do \
		[ -e "$$f" ] || continue; found=1; \
		echo "==> $$f"; $(PY) "$$f"; \
	done; [ -n "$$found" ] || echo "no benchmarks in bench/"

## Extract messages, update (or create) the fr/en catalogs, compile them.
translations: bootstrap
	mkdir -p $(TRANSLATIONS)
	$(VENV)/bin/pybabel -q extract -F babel.cfg -k _l -k lazy_gettext \
		-o $(TRANSLATIONS)/messages.pot .
	@set -e; for lang in $(LANGS); do \
		if [ -f $(TRANSLATIONS)/$$lang/LC_MESSAGES/messages.po ]; then \
			$(VENV)/bin/pybabel -q update -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) -l $$lang; \
		else \
			$(VENV)/bin/pybabel -q init -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) -l $$lang; \
		fi; \
	done
	$(VENV)/bin/pybabel -q compile -d $(TRANSLATIONS)

## Caches only. The virtualenv and instance/ (database, directory, secrets) are never touched.
clean:
	find . -path ./.venv -prune -o -type d -name __pycache__ -exec rm -rf {} +
	rm -rf .pytest_cache .hypothesis build *.egg-info
