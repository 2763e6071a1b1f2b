# C++ API (bindings-c): the static library, the GoogleTest suite (plain and under
# AddressSanitizer + UBSan), the example inference server, and the CMake build.
#
#   make test-cxx        build libatom_fabric_cxx.a (debug) and run the C++ tests
#   make test-sanitize   the same tests built with -fsanitize=address,undefined
#   make test-cxx-cmake  configure and build examples/cpp with CMake (cargo driven by CMake)
#   make cxx-example     build and run examples/cpp/inference_server.cpp with g++
#
# The Rust side is built with cargo into $(CARGO_TARGET_DIR) if set, else ./target (debug
# profile, so `make test` shares the artifacts of test-rust). g++, GoogleTest (Debian
# libgtest-dev) and cmake are installed with apt-get when missing.

CXX_TARGET_DIR := $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),$(CURDIR)/target)
CXX_LIB := $(CXX_TARGET_DIR)/debug/libatom_fabric_cxx.a
CXX_OUT := $(CXX_TARGET_DIR)/cxx
CXX_INCLUDES := -I$(CURDIR)/bindings-c/include -I$(CXX_TARGET_DIR)/cxxbridge
# What the Rust standard library and the crates need from the system (cargo rustc --print
# native-static-libs), plus noexecstack: the ML-DSA assembly objects carry no GNU-stack note.
CXX_SYSLIBS := -lstdc++ -lgcc_s -lutil -lrt -lpthread -lm -ldl -Wl,-z,noexecstack
CXX_FLAGS := -std=c++17 -g -O1 -Wall -Wextra -Werror -pthread
CXX_SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
CXX ?= g++

# apt-get as root, or through passwordless sudo; nothing prompts.
CXX_APT := $(if $(filter 0,$(shell id -u)),,sudo -n) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: cxx-deps cxx-lib test-cxx test-sanitize test-cxx-cmake cxx-example

## cxx-deps: g++ and GoogleTest from Debian (only when missing).
cxx-deps:
	@missing=""; \
	command -v g++ >/dev/null 2>&1 || missing="$$missing g++"; \
	{ test -f /usr/include/gtest/gtest.h && ls /usr/lib/*/libgtest.a >/dev/null 2>&1; } || missing="$$missing libgtest-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(CXX_APT) update -qq && $(CXX_APT) install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

## cxx-lib: the Rust static library and the generated bridge headers.
cxx-lib:
	CARGO_TARGET_DIR=$(CXX_TARGET_DIR) $(CARGO) build -p atom-fabric-cxx
	test -f $(CXX_LIB) -a -f $(CXX_TARGET_DIR)/cxxbridge/atom-fabric-cxx/src/lib.rs.h

$(CXX_OUT):
	mkdir -p $@

test-cxx: cxx-deps cxx-lib | $(CXX_OUT)
	$(CXX) $(CXX_FLAGS) $(CXX_INCLUDES) bindings-c/tests/atom_test.cpp -o $(CXX_OUT)/atom_test \
	  $(CXX_LIB) -lgtest -lgtest_main $(CXX_SYSLIBS)
	cd $(CXX_OUT) && ./atom_test --gtest_brief=1

# Leak detection is on: the Rust side frees what it allocates (rayon's global pool threads
# are reachable from statics and are not reported). Where LeakSanitizer cannot run (it needs
# ptrace-like thread suspension, which some sandboxes forbid), override with
# `make test-sanitize CXX_ASAN_OPTIONS=detect_leaks=0:abort_on_error=1`.
CXX_ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=1:strict_string_checks=1
test-sanitize: cxx-deps cxx-lib | $(CXX_OUT)
	$(CXX) $(CXX_FLAGS) $(CXX_SAN_FLAGS) $(CXX_INCLUDES) bindings-c/tests/atom_test.cpp \
	  -o $(CXX_OUT)/atom_test_san $(CXX_LIB) -lgtest -lgtest_main $(CXX_SYSLIBS)
	cd $(CXX_OUT) && ASAN_OPTIONS=$(CXX_ASAN_OPTIONS) \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ./atom_test_san --gtest_brief=1

cxx-example: cxx-deps cxx-lib | $(CXX_OUT)
	$(CXX) $(CXX_FLAGS) $(CXX_INCLUDES) examples/cpp/inference_server.cpp -o $(CXX_OUT)/inference_server \
	  $(CXX_LIB) $(CXX_SYSLIBS)
	rm -rf $(CXX_OUT)/example-work
	$(CXX_OUT)/inference_server $(CXX_OUT)/example-work

test-cxx-cmake: cxx-deps
	command -v cmake >/dev/null 2>&1 || { $(CXX_APT) update -qq && $(CXX_APT) install -y -qq --no-install-recommends cmake >/dev/null; }
	cmake -S bindings-c -B $(CXX_OUT)/cmake -DCMAKE_BUILD_TYPE=Debug -DATOM_CARGO_TARGET_DIR=$(CXX_TARGET_DIR) \
	  -DATOM_BUILD_EXAMPLE=ON >/dev/null
	cmake --build $(CXX_OUT)/cmake --target inference_server
	rm -rf $(CXX_OUT)/cmake-work
	$(CXX_OUT)/cmake/inference_server $(CXX_OUT)/cmake-work >/dev/null

EXTRA_TESTS += test-cxx test-sanitize cxx-example test-cxx-cmake
