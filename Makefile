# Front door. `make run` and `make test` work on a fresh Debian 12 machine.
BUILD_DIR ?= build
CMAKE_ARGS ?=
CTEST_ARGS ?=
JOBS ?= $(shell nproc)
MODEL ?=

.PHONY: all deps configure build test unit run bench clean

all: build

deps:
	@scripts/bootstrap.sh

configure: deps
	@if [ ! -f $(BUILD_DIR)/build.ninja ]; then \
	  cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS); fi

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Every test; GPU tests report "skipped" where no GPU is present.
test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 600 $(CTEST_ARGS)

unit: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -L unit $(CTEST_ARGS)

run: build
	scripts/run-local.sh $(MODEL)

bench: build
	scripts/bench.sh

clean:
	rm -rf $(BUILD_DIR)
