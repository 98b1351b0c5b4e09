# Set-up and everyday commands. `make test` and `make demo` work on a fresh machine:
# they create .venv and install everything first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Without an NVIDIA GPU, take the CPU build of torch (2.13.0 is available locally here);
# a plain `pip install torch` would download a multi-GB CUDA build.
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
EXTRAS ?= test,video,distributed,app

.PHONY: install test app demo bench gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

# The browser tests drive Debian's Chromium (Playwright's own browser download cannot work offline).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq chromium

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest

app: $(STAMP)
	$(BIN)/gen app

demo: $(STAMP)
	$(BIN)/gen image "a lighthouse on a cliff at dusk" --model tiny-sd --width 128 --height 64 \
		--steps 4 --seed 7 --batch 2 --out outputs/demo/lighthouse.png --overwrite
	$(BIN)/gen image "a lighthouse on a cliff at dusk" --model tiny-sdxl --width 96 --height 64 \
		--steps 4 --seed 7 --out outputs/demo/lighthouse-sdxl.png --overwrite
	$(BIN)/gen style --content assets/coffee.jpg --style assets/brick.jpg --style assets/gravel.jpg:0.3 \
		--steps 20 --size 128 --out outputs/demo/coffee-styled.png --overwrite
	$(BIN)/gen video "waves rolling onto a beach" --model tiny-wan --frames 17 --width 64 --height 64 \
		--steps 4 --seed 3 --out outputs/demo/waves.mp4 --overwrite
	$(BIN)/gen mask --model wan2.1-1.3b --png outputs/demo/wan-mask.png --overwrite
	$(BIN)/gen info outputs/demo/lighthouse-7.png

bench: $(STAMP)
	$(BIN)/python benchmarks/entropy_scaling.py --rounds 16
	for m in arch-flux-dev arch-sd35-large arch-sd35-medium arch-qwen-image; do \
		$(BIN)/python benchmarks/entropy_scaling.py --model $$m --size 256x256 --depth 1 --rounds 16; done
	$(BIN)/python benchmarks/style_transfer.py
	$(BIN)/python benchmarks/radial_attention.py

gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
