# Two entry points for a fresh machine: `make demo` and `make test` (each creates .venv first).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench clean browser

CORE := $(VENV)/.core

# the core alone (onnx, onnxruntime, numpy, networkx, typer, rich): all that pruning an ONNX file needs
$(CORE): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(CORE)

# the test environment adds the converters' frameworks and the dev tools
$(STAMP): $(CORE)
	# the CPU torch wheel first, so nothing else can pull a CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[torch,tf,dev,jax]'
	touch $(STAMP)

demo: $(CORE)
	$(BIN)/spa prune models/samples/simple_cnn.onnx -o /tmp/spa-demo-pruned.onnx --ratio 0.5 --oracle --latency

# headless Chromium for the HTML report's screenshot test (Debian package; skipped where apt is unavailable)
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: the HTML screenshot test will be skipped"; }

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n 2 -m "not slow"

test-all: $(STAMP) browser
	$(BIN)/python -m pytest -q -n 2

clean:
	rm -rf $(VENV)
