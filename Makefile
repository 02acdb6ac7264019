# The two commands: `make run` runs outdial on this machine; `make test` tests it.
# Both install what they need (deploy/local/deps.sh) and work from a fresh clone.

BUILD ?= build
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: all deps build run test test-unit test-system test-asan bench clean

all: build

deps:
	deploy/local/deps.sh

build: deps
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS) >/dev/null
	ninja -C $(BUILD)

run:
	deploy/local/run.sh

test:
	deploy/local/test.sh

test-asan:
	OUTDIAL_SANITIZE=1 deploy/local/test.sh

bench: build
	bench/ingress/run.sh
	bench/accept-sql/run.sh

clean:
	rm -rf $(BUILD) build-asan
