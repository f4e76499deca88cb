# The two commands of README.md: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test init assets bench clean messages

$(STAMP): requirements.txt pyproject.toml $(wildcard package.json package-lock.json)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(MAKE) --no-print-directory assets
	touch $(STAMP)

# bpmn-js and dmn-js from the npm registry into web/static/vendor/ (git-ignored); message catalogs compiled.
# Without npm the pages still work, without the drawn diagram and the modeller.
assets:
	@if [ ! -f package-lock.json ]; then :; elif command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: instance pages will show no diagram"; fi
	@if ls web/translations/*/LC_MESSAGES/*.po >/dev/null 2>&1; then \
	$(BIN)/pybabel -q compile -d web/translations; fi

init: $(STAMP)
	$(BIN)/bpm init --demo

# `make run PORT=5001` when 5000 is taken (HOST=0.0.0.0 to serve the network)
PORT ?= 5000
HOST ?= 127.0.0.1

run: init
	$(BIN)/bpm serve --host $(HOST) --port $(PORT)

# Catalogs compiled again each time: a .po changed since the install must not be tested stale.
test: $(STAMP)
	$(BIN)/pybabel -q compile -d web/translations
	$(BIN)/python -m pytest -q

# Refresh the message catalogs from the code (see babel.cfg); translate what is new by hand.
messages: $(STAMP)
	$(BIN)/pybabel -q extract -F babel.cfg -k _l -k NotFound -k Forbidden -k Conflict -k InvalidInput \
		-k CommandFailed -k CannotMove -k PasswordRefused -k _problem:3 --no-location --sort-output --project "Branch BPM" -o web/translations/messages.pot .
	$(BIN)/pybabel -q update --no-wrap --ignore-obsolete -i web/translations/messages.pot -d web/translations

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) instance .pytest_cache node_modules web/static/vendor
