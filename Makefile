# The README's two commands. Both install what is missing (Debian packages,
# by name), configure and build with CMake, then run.
#
#   make demo   build, start parksyncd on its embedded defaults, push the two
#               ministries' example updates, print the consolidated summary
#   make test   build with AddressSanitizer + UndefinedBehaviorSanitizer and
#               -Werror, then run every test through ctest
#
# Other targets: deps, build, clean.

DEB_PACKAGES := cmake make gcc pkg-config protobuf-c-compiler libprotobuf-c-dev \
                libzmq3-dev libsqlite3-dev libsodium-dev libinih-dev libjansson-dev \
                libsystemd-dev libcriterion-dev sqlite3

BUILD      ?= build
TEST_BUILD ?= build-test
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
SUDO       := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: all demo test deps build clean

all: build

deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $$missing; \
	fi

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPARKSYNC_SANITIZE=OFF
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	./client/examples/demo.sh $(BUILD)/bin

test: deps
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPARKSYNC_SANITIZE=ON -DPARKSYNC_WERROR=ON
	cmake --build $(TEST_BUILD) -j $(JOBS)
	cd $(TEST_BUILD) && ctest --output-on-failure --timeout 900

clean:
	rm -rf $(BUILD) $(TEST_BUILD)
