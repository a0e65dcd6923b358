# Everything a fresh machine needs goes through these targets (see README "Quick start").
# The local stack (Kafka, TimescaleDB, Prometheus, Alertmanager) installs itself on first use
# into $(IOC_STACK_DIR) (default ~/.local/share/ioc/stack), outside the repository.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
IOC     = $(BIN)/ioc
PYTEST_ARGS ?=
# the slowest tests of each suite, printed at its end: where the CI budget (make test under
# 25 minutes, make chaos under 40) goes
SLOWEST = --durations=15 --durations-min=5

.PHONY: install run stack stack-down status test chaos unit integration lint typecheck fmt dashboards k8s bench bench-venv clean

# Debian's chromium for the console's browser test (apt-get as root; never a download by
# Playwright), net-snmp's snmpd/snmptrap for the SNMP collector's tests, and ffmpeg (the RTSP
# collector's decoder) with GStreamer's RTSP server for its tests: cheap checks once they are
# there.
install: $(VENV)/.installed
	@$(BIN)/python -m ioc.deploy.local.browser
	@$(BIN)/python -m ioc.deploy.local.snmp_peers
	@$(BIN)/python -m ioc.deploy.local.rtsp_peers

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install -q -e '.[dev]'
	@touch $@

## main job: stack up, schema, topics, pipeline on the default scenario (Ctrl-C to stop)
run: install
	$(IOC) run $(if $(SCENARIO),--scenario $(SCENARIO)) $(if $(DURATION),--duration $(DURATION))

stack: install
	$(IOC) stack up

stack-down: install
	$(IOC) stack down

status: install
	$(IOC) stack status

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy .

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## the whole suite against the real local stack (what .ci/run runs): lint while the stack
## comes up, then the integration tests against it (their progress on the terminal), with the
## type-check and the unit tests (which need no stack) beside them, their output shown after:
## the integration tests mostly wait on the wall clock
test: install
	$(MAKE) --no-print-directory -j2 -Oline lint stack
	@mkdir -p .build; \
	$(MAKE) --no-print-directory -j2 -Otarget typecheck unit >.build/beside.log 2>&1 & beside=$$!; \
	$(BIN)/pytest tests/integration $(SLOWEST) $(PYTEST_ARGS); status=$$?; \
	wait $$beside; beside_status=$$?; \
	echo "== type-check and unit tests (run beside the integration tests): exit $$beside_status"; \
	cat .build/beside.log; \
	if [ $$status -eq 0 ]; then status=$$beside_status; fi; exit $$status

integration: install stack
	$(BIN)/pytest tests/integration $(SLOWEST) $(PYTEST_ARGS)

## fault tests: stop and restart shared services mid-run (not part of `make test`)
chaos: install stack
	$(BIN)/pytest -m chaos tests/chaos $(SLOWEST) $(PYTEST_ARGS)

unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

## regenerate the Kubernetes manifests (deploy/k8s/manifests) from the contract; the unit
## tests fail while the committed ones are stale and validate them offline
k8s: install
	$(IOC) deploy k8s

## regenerate the dashboards' JSON (dashboards/ioc/dashboards/generated) and the alert rules
## from the code; a unit test fails when the committed files are stale
dashboards: install
	$(IOC) dashboards build
	$(IOC) alerts build

## benchmarks (print their figures; results in bench/results/)
## (bench/all.py: each benchmark, then bench/results/summary.json and .png of every goal)
bench: install stack bench-venv
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/all.py

## the same at small sizes in about 10 minutes, into bench/out/quick/ (never bench/results/)
.PHONY: bench-quick
bench-quick: install stack bench-venv
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/all.py --quick

## one evaluation round and its memory at 1k, 10k and 100k devices (bench/results/device_scale.json)
.PHONY: bench-devices
bench-devices: install stack
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/device_scale.py --worker

## freshness per feed during the video-conference join burst (bench/results/burst.json)
.PHONY: bench-burst
bench-burst: install stack
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/burst.py

## cameras one RTSP collector samples per interval (bench/results/collect_rtsp.json); not in CI
.PHONY: bench-rtsp
bench-rtsp: install
	$(BIN)/python bench/collect_rtsp.py --cameras 12 --out bench/results/collect_rtsp.json

## the same at 1080p, 25 fps (bench/results/collect_rtsp_1080p.json): on an idle machine
.PHONY: bench-rtsp-1080p
bench-rtsp-1080p: install
	$(BIN)/python bench/collect_rtsp.py --cameras 8 --rounds 3 --width 1920 --height 1080 --fps 25 \
		--out bench/results/collect_rtsp_1080p.json

## network nodes one collector polls per interval over ICMP and SNMP (bench/results/collect_targets.json); root, not in CI
.PHONY: bench-targets
bench-targets: install
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/collect_targets.py --out bench/results/collect_targets.json

## an hour at 20,000 events/s with a fault every 5 minutes (bench/results/soak.json); not in CI
.PHONY: soak
soak: install stack
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/soak.py

## the national scenario (34 provinces, 100,110 devices) with per-province topics on three
## brokers and four workers, a worker and a broker killed (bench/results/national.json); not in CI
.PHONY: national
national: install stack
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/national.py

# The Python peers of bench/baselines.py, each in its own virtualenv with the project installed
# without dependencies (the peers only import the contract and bench/peer_work.py): Quix Streams
# pins older confluent-kafka and pydantic than the product uses; Pathway brings its own engine.
QUIX_VENV ?= .venv-quix
PATHWAY_VENV ?= .venv-pathway
bench-venv: $(QUIX_VENV)/.installed $(PATHWAY_VENV)/.installed
$(QUIX_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/pip install -q -U pip
	$(QUIX_VENV)/bin/pip install -q 'quixstreams>=3.28,<4' msgspec psycopg2-binary
	$(QUIX_VENV)/bin/pip install -q --no-deps -e .
	touch $@
$(PATHWAY_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(PATHWAY_VENV)
	$(PATHWAY_VENV)/bin/pip install -q -U pip
	$(PATHWAY_VENV)/bin/pip install -q pathway msgspec psycopg2-binary confluent-kafka
	$(PATHWAY_VENV)/bin/pip install -q --no-deps -e .
	touch $@

clean:
	rm -rf $(VENV) $(QUIX_VENV) $(PATHWAY_VENV) build dist .build .pytest_cache .mypy_cache .ruff_cache *.egg-info
