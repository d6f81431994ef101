# `make run` and `make test` set everything up on a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PORT ?= 8000

.PHONY: run test bench clean

$(INSTALLED): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(INSTALLED)

run: $(INSTALLED)
	$(BIN)/python manage.py migrate --noinput
	@echo ""
	@echo "  Open http://127.0.0.1:$(PORT)/ in your browser (Ctrl-C stops everything)."
	@echo ""
	PATH="$(CURDIR)/$(BIN):$$PATH" PORT=$(PORT) $(BIN)/honcho start -f Procfile

# pytest's exit code 5 means it collected no test: for this project that is a
# broken suite, never a pass.
test: $(INSTALLED)
	@status=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: the suite is broken."; fi; \
	exit $$status

# Every benchmark under benchmarks/ prints one JSON object per figure. They need
# ../shared/data (see each script's --help for other inputs); docs/benchmarks.md has the results.
bench: $(INSTALLED)
	@for script in benchmarks/*.py; do $(BIN)/python $$script || exit $$?; done

clean:
	rm -rf $(VENV) var
