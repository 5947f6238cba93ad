# tl-edge: `make demo` runs the pipeline on the shared pets data, `make test` runs the test suite.
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
SHARED  ?= ../shared/data
DATA    ?= $(SHARED)/pets/train
# The validation folder beside DATA (pets/train -> pets/val); a seeded 20 % split when there is none.
VAL     ?= $(patsubst %/train,%/val,$(patsubst %/,%,$(DATA)))
RUN     ?= runs/demo
WEIGHTS ?= $(SHARED)/weights
PYTEST_ARGS ?=

.PHONY: demo test bench venv seed-weights clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[train,device,dev]"
	touch $@

venv: $(VENV)/.installed

# Offline machines: put the ImageNet weights where Keras looks for them (no-op when already there).
seed-weights: venv
	$(BIN)/python -m tl.train.weights $(WEIGHTS)

demo: venv seed-weights
	@if [ -d "$(VAL)" ] && [ "$(VAL)" != "$(DATA)" ]; then valopt="--val-dir $(VAL)"; else valopt="--val-split 0.2"; fi; \
	$(BIN)/tl-train "$(DATA)" --out "$(RUN)" $$valopt
	@echo
	@echo "Demo finished. Results are in $(RUN)/ :"
	@ls -1 "$(RUN)"

test: venv seed-weights
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv seed-weights
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs build *.egg-info .pytest_cache
