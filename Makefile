# ClipCD — one entry point for set-up, tests, demo, lint and benchmarks.
# `make demo` and `make test` do all set-up themselves on a fresh Debian 12 machine.

SHELL := /bin/bash
SYSTEM_PYTHON := /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
# A change of any requirements file re-runs the set-up.
REQ_FILES := requirements.txt backend/requirements.txt training/requirements.txt tests/requirements.txt
REQS_HASH := $(shell cat $(REQ_FILES) | sha256sum | cut -c1-16)
STAMP := $(VENV)/.setup-stamp-$(REQS_HASH)
APT_PACKAGES := qgis python3-qgis qgis-providers python3-gdal gdal-bin xvfb python3-venv
export QT_QPA_PLATFORM ?= offscreen
export PYTHONDONTWRITEBYTECODE := 1
# The packages that hold code (qgis_clipcd/ fills in with the plugin).
CODE_DIRS := $(patsubst %/,%,$(sort $(dir $(wildcard backend/*.py training/*.py qgis_clipcd/*.py tools/*.py))))

.PHONY: setup system-deps test test-all demo lint bench clean package deploy

setup: $(STAMP)

# QGIS and GDAL come from Debian: pip cannot provide them.
system-deps:
	@if $(SYSTEM_PYTHON) -c "import qgis.core, osgeo.gdal" 2>/dev/null && command -v xvfb-run >/dev/null \
	    && command -v gdal_polygonize.py >/dev/null && $(SYSTEM_PYTHON) -c "import ensurepip" 2>/dev/null; then \
	  echo "system packages: QGIS, GDAL and Xvfb present"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian packages: $(APT_PACKAGES)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	else \
	  echo "QGIS, GDAL or Xvfb is missing. Run as root:"; \
	  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends $(APT_PACKAGES)"; \
	  exit 1; \
	fi

$(STAMP): $(REQ_FILES) | system-deps
	@test -x $(PY) || $(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.setup-stamp-*
	@touch $@

# The QGIS tests run one file per process: QGIS 3.22 beside rasterio's and pyproj's own PROJ and
# GDAL has crashed (SIGSEGV in parameterAsExtent) late in a long process that had run everything.
# pytest's exit code 5 (every test of a file deselected) is not a failure.
QGIS_TESTS = $(sort $(wildcard tests/plugin/test_*.py))
define each_qgis_file
	@set -e; for f in $(QGIS_TESTS); do $(PY) -m pytest -q $(1) $$f || test $$? -eq 5; done
endef

test: setup
	$(PY) -m pytest -q --ignore=tests/plugin
	$(call each_qgis_file,)

test-all: setup
	$(PY) -m pytest -q -m "not gpu" --ignore=tests/plugin
	$(call each_qgis_file,-m "not gpu")

demo: setup
	$(PY) -m backend.demo

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy $(CODE_DIRS)
	$(PY) -m bandit -q -c pyproject.toml -r $(CODE_DIRS)
	$(PY) -m tools.scan_package
	$(PY) -m tools.import_graph

# The plugin zips for QGIS (Plugins › Manage and Install Plugins › Install from ZIP): dist/qgis_clipcd-<version>.zip
# (plugins.qgis.org: no binaries, the default model downloaded on first use) and -offline.zip (the models inside)
package: setup
	$(PY) -m tools.package_plugin
	$(PY) -m tools.package_plugin --offline

# Install that zip into a QGIS profile ($QGIS_PROFILE_DIR, else the default profile) and enable it.
deploy: package
	$(PY) -m tools.deploy_plugin

bench: setup
	$(PY) -m bench.run_all

clean:
	rm -rf out dist .pytest_cache .mypy_cache .ruff_cache
