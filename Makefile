# Two entry points that work on a fresh clone: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

# No pip cache: torch's CUDA build brings several GB of wheels, and a cached copy of them
# beside the 6.7 GB venv is disk a CI machine may not have (one ran out during this install).
PIP := $(BIN)/pip install -q --no-cache-dir

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || ($(PY) scripts/check_disk.py $(VENV) 7 && $(PY) -m venv $(VENV))
	$(PIP) --upgrade pip
	# torch comes from the machine's local disk (CUDA build that also runs on CPU)
	$(PIP) torch==2.14.1 torchvision==0.29.1
	$(PIP) -e ".[fast,blender,dev]"
	touch $@

demo: setup
	$(BIN)/python scripts/demo.py --out out/demo

test: setup
	$(BIN)/python -m pytest -q -ra

bench: setup
	$(BIN)/python scripts/bench_protocol.py

clean:
	rm -rf dist build out .pytest_cache
