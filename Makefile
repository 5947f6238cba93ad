# tl-edge: `make demo` runs the pipeline on the shared pets data, `make test` runs the test suite.
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
SHARED  ?= ../shared/data
DATA    ?= $(SHARED)/pets/train
# The validation folder beside DATA (pets/train -> pets/val); a seeded 20 % split when there is none.
VAL     ?= $(patsubst %/train,%/val,$(patsubst %/,%,$(DATA)))
RUN     ?= runs/demo
ALLOW   ?= dog
OTHER   ?= other
WEIGHTS ?= $(SHARED)/weights
PYTEST_ARGS ?=

.PHONY: demo test bench venv seed-weights clean pi-check

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

# The whole pipeline: train → convert (all variants, checked) → classify → replay a porch scene → benchmark.
demo: venv seed-weights
	@if [ -d "$(VAL)" ] && [ "$(VAL)" != "$(DATA)" ]; then valopt="--val-dir $(VAL)"; else valopt="--val-split 0.2"; fi; \
	$(BIN)/tl-train "$(DATA)" --out "$(RUN)" $$valopt
	$(BIN)/tl-convert "$(RUN)" --all
	$(BIN)/python benchmarks/scene.py --data "$(DATA)" --allow $(ALLOW) --other $(OTHER) --out "$(RUN)/scene"
	$(BIN)/tl-device classify "$(RUN)/model_int8.tflite" "$(RUN)/scene/frame_00010.jpg" "$(RUN)/scene/frame_00050.jpg"
	rm -f "$(RUN)/events.jsonl"
	$(BIN)/tl-device run --model "$(RUN)/model_int8.tflite" --source "$(RUN)/scene" --allow $(ALLOW) \
	  --door mock --events "$(RUN)/events.jsonl" --snapshots "$(RUN)/snapshots"
	@echo "door events:" && cat "$(RUN)/events.jsonl"
	@if [ -d "$(VAL)" ]; then benchdata="$(VAL)"; else benchdata="$(DATA)"; fi; \
	$(BIN)/tl-bench "$(RUN)/model_float32.tflite" "$(RUN)/model_int8.tflite" --data $$benchdata --runs 100 \
	  --markdown "$(RUN)/bench.md" --plot "$(RUN)/bench.png" --json "$(RUN)/bench.json"
	@echo
	@echo "Demo finished. Results are in $(RUN)/ :"
	@echo "  model.keras, labels.txt, train.json, history.png, confusion.png   (tl-train)"
	@echo "  model_{float32,float16,dynamic,int8}.tflite, convert.json         (tl-convert)"
	@echo "  scene/, events.jsonl, snapshots/                                  (tl-device run, replayed)"
	@echo "  bench.md, bench.png, bench.json                                   (tl-bench)"

test: venv seed-weights
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv seed-weights
	$(BIN)/python benchmarks/run_all.py

# arm64 Debian 12 (SUITE=trixie: 13) under qemu-user emulation: the wheel with [device], classify, a replay with
# the mock door, check-config, tl-bench. Needs root and the network; not part of `make test` (minutes).
pi-check: venv
	PYTHON=$(abspath $(BIN)/python) SHARED=$(abspath $(SHARED)) benchmarks/pi_check.sh

clean:
	rm -rf $(VENV) runs build *.egg-info .pytest_cache
