# vocreg build. Every target works from a clean clone: `make install` makes the virtualenv,
# installs the pinned dependencies and generates the gRPC stubs from protos/.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
GEN    := services/gen
# vocreg's own protos; protos/google/api/ holds the vendored http annotations (their Python
# modules come with googleapis-common-protos, so they are imported, never generated here).
PROTOS := $(shell find protos/vocreg -name '*.proto' | sort)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install tools protos run wipe test test-unit test-integration test-e2e test-faults lint bench deploy-files docs clean pdf-tools

install: $(VENV)/.installed $(GEN)/.stamp

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,localdb]'
	touch $@

# Stubs are build output (git ignores them); the .pth file puts them on the venv's path so
# the generated absolute imports (vocreg.common.v1...) resolve from any working directory.
# The OpenAPI document of the HTTP routes is built from the same protos (with their comments,
# from a descriptor set) and served by the edge at /openapi.json.
$(GEN)/.stamp: $(PROTOS) $(VENV)/.installed
	rm -rf $(GEN) && mkdir -p $(GEN)
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=$(GEN) --pyi_out=$(GEN) \
		--grpc_python_out=$(GEN) $(PROTOS)
	echo "$(CURDIR)/$(GEN)" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/vocreg-gen.pth"
	$(BIN)/python -m grpc_tools.protoc -Iprotos --include_imports --include_source_info \
		--descriptor_set_out=$(GEN)/descriptors.pb $(PROTOS)
	$(BIN)/python -m services.common.openapi $(GEN)/descriptors.pb $(GEN)/openapi.json
	touch $@

protos: $(VENV)/.installed
	rm -f $(GEN)/.stamp
	$(MAKE) $(GEN)/.stamp

# The platform on the local defaults: a local database server (data kept in .data/, unless
# MONGO_URI names a server), every worker and the edge on the local broker.
run: install
	$(BIN)/python -m services.run

# Delete the local database of `make run` (refused while it runs).
wipe: install
	$(BIN)/python -m services.localdb wipe

# Unit and integration tests run under `nameko test` (eventlet-patched, real RabbitMQ);
# e2e and deploy tests run in plain pytest because grpcio must never share a process
# with eventlet's monkey patching.
# Tools the tests run that PyPI does not carry: promtool (rule checks and rule unit tests),
# taken from Debian's prometheus package without installing the server.
TOOLS := .tools
tools: $(TOOLS)/promtool

$(TOOLS)/promtool:
	rm -rf $(TOOLS)/deb && mkdir -p $(TOOLS)/deb
	cd $(TOOLS)/deb && { apt-get download prometheus 2>/dev/null || \
		{ apt-get update -qq && apt-get download prometheus; }; }
	dpkg-deb -x $(TOOLS)/deb/prometheus_*.deb $(TOOLS)/deb/root
	cp $(TOOLS)/deb/root/usr/bin/promtool $@ && rm -rf $(TOOLS)/deb
	$@ --version | head -1

test: install tools
	tests/broker_ready.sh
	$(BIN)/python -m services.common.nameko_cli test tests/unit tests/integration
	$(BIN)/pytest -p no:nameko tests/e2e tests/deploy

test-unit: install
	$(BIN)/python -m services.common.nameko_cli test tests/unit

test-integration: install
	tests/broker_ready.sh
	$(BIN)/python -m services.common.nameko_cli test tests/integration

test-e2e: install
	tests/broker_ready.sh
	$(BIN)/pytest -p no:nameko tests/e2e

# The fault suite (tests/faults, about two minutes): the platform on a RabbitMQ node of its own
# (own name, ports and data in a temporary directory; the shared broker is never touched),
# stopped for 5 s and for 30 s under load, a worker killed, every method of every service
# fuzzed from reflection; its figures are printed at the end. Needs rabbitmq-server installed.
test-faults: install
	$(BIN)/pytest -p no:nameko tests/faults

lint: install
	$(BIN)/ruff check services tests protos
	cd protos && npx --yes @bufbuild/buf@1.75.0 lint

# What the report's PDF test renders pages with (tests/e2e/test_reporting_grpc.py): Debian's
# poppler-utils, its CMaps and a Chinese font, installed only when absent (as root).
pdf-tools:
	@if command -v pdftoppm >/dev/null 2>&1 && [ -d /usr/share/poppler/cMap ] \
		&& [ -n "$$(fc-list :lang=zh 2>/dev/null)" ]; then echo "pdf tools: present"; \
	else DEBIAN_FRONTEND=noninteractive apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils poppler-data fonts-noto-cjk; fi

bench: install
	tests/broker_ready.sh
	$(BIN)/python -m tests.bench.run

# k8s/<svc>.yaml, the kustomization, the compose stack and Prometheus' targets, rendered from
# every service's declaration (services/<svc>/__init__.py). Run it after adding a service;
# tests/deploy fails while the committed files differ from a fresh render.
deploy-files: $(VENV)/.installed
	$(BIN)/python deploy/render.py

# protos/README.md (the API and event contracts) and README.md's walkthrough and areas,
# rendered from the protos and protos/examples/; tests/deploy/test_docs.py fails while they
# differ from a fresh render.
docs: install
	$(BIN)/python protos/render.py

clean:
	rm -rf $(VENV) $(GEN)
