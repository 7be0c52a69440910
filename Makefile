# Two entry points that work on a fresh clone: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch comes from the machine's local disk (CUDA build that also runs on CPU)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[fast,blender,dev]"
	touch $@

demo: setup
	$(BIN)/python scripts/demo.py --out out/demo

test: setup
	$(BIN)/python -m pytest -q -ra

bench: setup
	$(BIN)/python scripts/bench_protocol.py

clean:
	rm -rf dist build out .pytest_cache
