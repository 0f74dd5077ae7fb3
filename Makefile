# Two commands do all set-up on a fresh Debian 12 machine:  make demo  and  make test.
# Every target installs what is missing first (apt packages, npm packages, the native addon).

SHELL := /bin/bash
APT_PACKAGES := libtorch-dev libgloo-dev libopenblas0-pthread iproute2
PEER_PACKAGES := python3-torch
NODE_STAMP := node_modules/.plsc-installed

.PHONY: all deps deps-peer build test demo bench clean

all: build

# System libraries: libtorch (compute), gloo (c10d collectives), OpenBLAS (GEMM; without it Debian's
# libtorch falls back to the reference BLAS, ~30x slower). iproute2: `ip netns` for the multi-host tests.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# PyTorch as a peer for the benchmarks only (never needed at runtime).
deps-peer: deps
	@dpkg -s $(PEER_PACKAGES) >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PEER_PACKAGES); }

# ONNXRUNTIME_NODE_INSTALL=skip: onnxruntime-node's postinstall would otherwise download its CUDA
# provider from NuGet on linux/x64 (plsc serves on the CPU; the CPU library ships in the package).
$(NODE_STAMP): package.json package-lock.json | deps
	ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

build: deps $(NODE_STAMP)
	npm run build

test: build
	npm test

demo: build
	node bin/plsc.js demo

bench: build deps-peer
	node bin/plsc.js bench engine
	node bin/plsc.js bench comm
	node bin/plsc.js bench head --classes 1000000 --batch 256 --sample-rate 1.0 --peer pytorch
	node bin/plsc.js bench head --classes 1000000 --batch 256 --sample-rate 0.1 --peer pytorch
	node bin/plsc.js bench head --classes 1000000 --batch 256 --sample-rate 0.1 --storage bfloat16
	node bin/plsc.js bench head --classes 1000000 --batch 256 --sample-rate 0.1 --storage float16
	# 10 million classes on one process (about 21 GiB resident: run it with nothing else on the machine).
	node bin/plsc.js bench head --classes 10000000 --emb 512 --batch 256 --sample-rate 0.1 --storage bfloat16
	node bin/plsc.js bench train --model iresnet18 --nproc 1
	node bin/plsc.js bench train --model iresnet18 --nproc 2
	node bin/plsc.js bench serve
	node bin/plsc.js bench serve --route classify --classes 1000000 --concurrency 1,8
	node bin/plsc.js bench serve --route classify --classes 1000000 --concurrency 1,8 --max-batch 1

clean:
	rm -rf dist native/build node_modules
