# The README's two commands. Both install what is missing (Debian packages,
# by name), configure and build with CMake, then run.
#
#   make demo   build (no tests), start parksyncd on its embedded defaults with
#               endpoints of its own in a temporary folder, push the two
#               ministries' example updates, print the consolidated summary
#   make test   build with AddressSanitizer + UndefinedBehaviorSanitizer and
#               -Werror, then run every test through ctest
#
# Other targets: deps, build, clean, and
#   make fuzz   build the libFuzzer targets with clang (ASan + UBSan) in
#               build-fuzz and run each for FUZZ_SECONDS (default 60)
#               against tests/fuzz/corpus; see tests/fuzz/README.md
#   make soak   build (no tests), then run tests/bench/soak_months.py for
#               SOAK_MINUTES (default 30): 2,000 contested updates/s with
#               watchers; fails when the daemon's WAL, RSS or database
#               outgrow their bounds or a watcher misses a change (CI runs
#               SOAK_MINUTES=2)
#   make federation-test  build (no tests), then run tests/federation/netns.py
#               as root: three sites in network namespaces of its own under
#               seeded faults (partitions, one-way cuts, kill -9, a disk
#               wipe), checked for convergence and nothing acknowledged
#               lost; PARKSYNC_FED_SEED=N replays a run's faults (CI runs it)
#   make bench-peers  build bench_peers in build-peers (Release) and compare
#               parksync with etcd, Redis, NATS JetStream KV and Mosquitto
#               on this machine (installs them; tests/bench/peers/README.md);
#               PEERS_ARGS passes options, e.g. PEERS_ARGS="-n 20000 -S -N 100000"

# What building parksync needs (make build, make demo); protoc generates
# the Python client's protobuf module.
BUILD_PACKAGES := cmake make gcc pkg-config protobuf-c-compiler libprotobuf-c-dev \
                  libzmq3-dev libsqlite3-dev libsodium-dev libinih-dev libjansson-dev \
                  libsystemd-dev libmicrohttpd-dev protobuf-compiler

# What the tests need besides (make test, and the .deb the system test
# builds: dpkg-dev and file for cpack; python3-venv for the pip install
# test of the Python client; bash-completion for the completion test;
# chromium, python3-websocket (its DevTools protocol) and a font for the
# web page's browser test).
DEB_PACKAGES := $(BUILD_PACKAGES) libcriterion-dev sqlite3 dpkg-dev file \
                python3 python3-zmq python3-protobuf python3-venv \
                bash-completion chromium python3-websocket fonts-dejavu-core

# Only `make fuzz` needs these: clang with libFuzzer, llvm-symbolizer.
FUZZ_PACKAGES := clang-14 libclang-rt-14-dev llvm-14

# `make soak` drives the daemon with the Python client of the conformance
# tests.
SOAK_PACKAGES := python3 python3-zmq python3-protobuf protobuf-compiler

# `make federation-test` drives the sites with the Python client, makes
# the namespaces with ip and the one-way cuts with nft.
FEDERATION_PACKAGES := $(SOAK_PACKAGES) iproute2 nftables

BUILD      ?= build
PEERS_BUILD ?= build-peers
PEERS_ARGS ?=
TEST_BUILD ?= build-test
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
SOAK_MINUTES ?= 30
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
SUDO       := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: all demo test deps build-deps build clean fuzz fuzz-deps soak soak-deps bench-peers \
        federation-test federation-deps

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

build-deps:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(BUILD_PACKAGES)"

# no test framework: the demo needs the daemon and the CLI only
build: build-deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPARKSYNC_SANITIZE=OFF \
	  -DPARKSYNC_TESTS=OFF
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	./client/examples/demo.sh $(BUILD)/bin

test: deps
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPARKSYNC_SANITIZE=ON -DPARKSYNC_WERROR=ON
	cmake --build $(TEST_BUILD) -j $(JOBS)
	cd $(TEST_BUILD) && ctest --output-on-failure --timeout 900

fuzz-deps:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(FUZZ_PACKAGES)"

fuzz: deps fuzz-deps
	CC=clang-14 cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DPARKSYNC_FUZZ=ON -DPARKSYNC_TESTS=OFF
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_update fuzz_query \
	  fuzz_publication fuzz_control fuzz_json fuzz_csv make_corpus
	FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh $(FUZZ_BUILD)

soak-deps:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(SOAK_PACKAGES)"

# the release build: sanitizers would make the RSS and rate meaningless
soak: build soak-deps
	/usr/bin/python3 tests/bench/soak_months.py --binary $(BUILD)/bin/parksyncd \
	  --cli $(BUILD)/bin/parksync --minutes $(SOAK_MINUTES)

federation-deps:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(FEDERATION_PACKAGES)"

# the release build, as the soak: the faults' timing is the daemon's real pace
federation-test: build federation-deps
	$(SUDO) /usr/bin/python3 tests/federation/netns.py --build $(BUILD) \
	  $(if $(PARKSYNC_FED_SEED),--seed $(PARKSYNC_FED_SEED))

# The harness that starts parksyncd is built with the tests (Criterion):
# deps installs it; run.sh installs the peers.
bench-peers: deps
	BUILD=$(PEERS_BUILD) JOBS=$(JOBS) tests/bench/peers/run.sh $(PEERS_ARGS)

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(FUZZ_BUILD) $(PEERS_BUILD)
