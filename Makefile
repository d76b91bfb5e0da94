# Thin targets. `make run` and `make test` work on a fresh clone: they create .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SPEED ?= 60
N ?= 1000

.PHONY: run test lint bench clean deps test-powercut test-sync-soak image test-image test-systemd test-disk

$(BIN)/.installed: pyproject.toml firmware-bridge/pyproject.toml receiver/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e ./firmware-bridge -e ./receiver -e '.[dev]'
	touch $@

deps: $(BIN)/.installed

var/cache/AFR34ZG_CDG-TLS_2024-07-06.jsonl: | $(BIN)/.installed
	$(BIN)/card-sim fetch var/cache

## run: the appliance on the built-in card simulator replaying the real AFR34ZG flight (x$(SPEED))
run: $(BIN)/.installed var/cache/AFR34ZG_CDG-TLS_2024-07-06.jsonl
	$(BIN)/appliance demo --speed $(SPEED)

## lint: ruff and mypy
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

## test: lint, then the whole test suite (unit, property, end-to-end, faults)
test: lint var/cache/AFR34ZG_CDG-TLS_2024-07-06.jsonl
	$(BIN)/pytest

## bench: benchmarks (never part of `make test`)
bench: $(BIN)/.installed var/cache/AFR34ZG_CDG-TLS_2024-07-06.jsonl
	$(BIN)/python tests/bench/bench_codec.py
	$(BIN)/python tests/bench/bench_pipeline.py
	$(BIN)/python tests/bench/bench_durable.py
	$(BIN)/python tests/bench/bench_sync.py

## test-powercut: N power cuts (default 1000) of the real service on a FUSE filesystem that loses
## unsynced writes; fails if anything acknowledged is lost (about 2.2 s a cut; needs root, /dev/fuse)
test-powercut: $(BIN)/.installed
	$(BIN)/python -m tests.faults.driver --cuts $(N)

## test-sync-soak: long sync runs (40 link cuts, 60 power cuts); needs root
test-sync-soak: $(BIN)/.installed
	SYNC_SOAK=1 $(BIN)/pytest -m soak tests/sync -s

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis

## image: the server's OS image in var/image/ (Debian bookworm rootfs + GPT disk image; root, ~2 min;
## needs mmdebstrap e2fsprogs fdisk dosfstools mtools)
image: $(BIN)/.installed
	PYTHON=$(BIN)/python image-build/build.sh

## test-image: boot var/image/rootfs under systemd-nspawn: appliance up, passenger port answers
test-image: $(BIN)/.installed
	@test -x var/image/rootfs/opt/appliance/current/bin/appliance || { echo "no image: make image first" >&2; exit 1; }
	APPLIANCE_TEST_IMAGE=var/image/rootfs APPLIANCE_TEST_DISK=var/image/appliance.img \
	  $(BIN)/pytest -p no:cacheprovider -rs tests/systemd/test_image.py

## test-systemd: the unit (systemd-analyze), the notify protocol, a real systemd under nspawn (~30 s)
test-systemd: $(BIN)/.installed
	$(BIN)/pytest tests/systemd

## test-disk: boot var/image/appliance.img in QEMU (UEFI, systemd-boot); needs qemu-system-x86 ovmf
test-disk:
	image-build/test-disk.sh var/image/appliance.img
