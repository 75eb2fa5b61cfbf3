# The two set-up commands of the README. Both install what they need first.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: torch install install-dev test demo

# A plain `pip install torch` pulls several GB of CUDA wheels; install the CPU build
# only when no torch is importable, and leave an existing one (e.g. a CUDA build) alone.
torch:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "torch==2.13.0"

install: torch
	$(PIP) install -q -e .

install-dev: torch
	$(PIP) install -q -e ".[dev]"

test: install-dev
	$(PYTHON) -m pytest -q

demo: install
	$(PYTHON) examples/tokenizer_demo.py --out demo_tokenizer.png
