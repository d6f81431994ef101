# `make run` and `make test` set everything up on a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PORT ?= 8000
HOST ?= 127.0.0.1
DATA_DIR ?= $(CURDIR)/var
# `make run` is for a computer of your own: errors' details in the terminal. `DEBUG=0 make run` turns
# that off; a server needs the settings of "Running in production" in the README.
DEBUG ?= 1

.PHONY: install run status worker test test-fast bench clean

$(INSTALLED): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(INSTALLED)

# Only the set-up: for a server whose processes systemd starts (deploy/, README).
install: $(INSTALLED)

# supervisord (supervisord.conf) runs the web server, the workers and beat, and starts again
# any of them that dies; Ctrl-C stops them all.
run: $(INSTALLED)
	mkdir -p "$(abspath $(DATA_DIR))/logs"
	DATA_DIR="$(abspath $(DATA_DIR))" $(BIN)/python manage.py migrate --noinput
	@echo ""
	@echo "  Open http://$(HOST):$(PORT)/ in your browser (Ctrl-C stops everything)."
	@if [ "$(DEBUG)" = "1" ]; then echo "  DEBUG=1: errors are written in detail here, for use on your own computer only."; \
	  echo "  To serve other people, see \"Running in production\" in the README."; fi
	@echo "  \"make status\" in another terminal shows each process."
	@echo ""
	DEBUG=$(DEBUG) DATA_DIR="$(abspath $(DATA_DIR))" HOST=$(HOST) PORT=$(PORT) PATH="$(CURDIR)/$(BIN):$$PATH" \
	  $(BIN)/supervisord -n -c supervisord.conf

# A computer that only trains, for a site whose web server, database, Redis and bucket are elsewhere
# (README, "Running on several machines"): one training worker per GPU (scripts/gpu-workers), or one
# on the CPU where there is none, `nice`d. No migrations, no web server. ENV_FILE names the site's
# settings (deploy/dlsite.env.example); check_worker_host refuses, saying why, settings that would
# keep the work on this computer (a filesystem broker, SQLite, files in a local folder).
ENV_FILE ?=
worker: $(INSTALLED)
	@set -a; if [ -n "$(ENV_FILE)" ]; then . "$(abspath $(ENV_FILE))"; fi; set +a; \
	  export DATA_DIR="$${DATA_DIR:-$(abspath $(DATA_DIR))}"; \
	  $(BIN)/python manage.py check_worker_host && exec nice -n 10 scripts/gpu-workers --cpu-if-none

# The processes of a running `make run`, as supervisord sees them.
status:
	@DATA_DIR="$(abspath $(DATA_DIR))" $(BIN)/supervisorctl -c supervisord.conf status

# The whole suite: the tests without workers or a browser on every core at once, then the worker
# and browser tests one at a time (scripts/test.py). TEST_PROCESSES=1 runs the first part in one process.
test: $(INSTALLED)
	@$(BIN)/python scripts/test.py $(PYTEST_ARGS)

# The quick loop: everything but the tests that start worker processes or a browser.
test-fast: $(INSTALLED)
	@$(BIN)/python -m pytest -m "not worker and not browser" -n $${TEST_PROCESSES:-auto} --dist loadscope $(PYTEST_ARGS)

# Every benchmark under benchmarks/ prints one JSON object per figure. They need
# ../shared/data (see each script's --help for other inputs); docs/benchmarks.md has the results.
# The *_offline.py scripts are not run: they are tools that try variants on a cache another script made
# first (each one's --help says which), and stop at once without it.
bench: $(INSTALLED)
	@for script in benchmarks/*.py; do \
	  case $$script in *_offline.py) continue;; esac; \
	  $(BIN)/python $$script || exit $$?; \
	done

clean:
	rm -rf $(VENV) var
