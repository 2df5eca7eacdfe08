# stoa - one non-recursive Makefile.
#   make            build the library, the pools, stoa-jobs and stoactl
#   make run        install missing packages, build, start the dev stack
#   make stop       stop the dev stack
#   make test       unit + fuzz-corpus replay + end-to-end, then again
#                   under AddressSanitizer/UBSan
#   make bench      the benchmarks of SPEC §9
#   make asan       the same binaries with ASan + UBSan in build/asan/
#   V=1             show the commands
.DELETE_ON_ERROR:
# Objects built through pattern chains (tests, fuzz) are kept.
.SECONDARY:
.SUFFIXES:
MAKEFLAGS += --no-builtin-rules

V ?= 0
Q := $(if $(filter 1,$(V)),,@)

BUILD ?= build/release
BIN ?= bin
SAN ?=
OPT ?= -O2 -g
CC ?= cc

POOLS := auth billing analytics admin
PKGS := libpq hiredis yajl libcurl openssl libargon2

# System headers through -isystem so their warnings are not ours.
PKG_CFLAGS := $(patsubst -I%,-isystem %,$(shell pkg-config --cflags $(PKGS) 2>/dev/null))
# zxcvbn-c (password strength) ships no .pc file.
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lfcgi -lzxcvbn
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)

WARN := -std=c11 -Wall -Wextra -Werror -Wshadow -Wpointer-arith \
	-Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla \
	-Wimplicit-fallthrough -fno-common
HARDEN := -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
LDHARDEN := -pie -Wl,-z,relro,-z,now
CPPFLAGS := -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L \
	-Imodules/common/include
ALL_CFLAGS := $(WARN) $(OPT) $(HARDEN) $(SAN) $(CPPFLAGS) $(PKG_CFLAGS) -pthread -MMD -MP
ALL_LDFLAGS := $(LDHARDEN) $(SAN) -pthread

.PHONY: all
all: $(BIN)/stoactl $(BIN)/stoa-jobs $(addprefix $(BIN)/stoa-,$(POOLS)) gateway

# Rebuild everything when the flags change.
FLAGS_FILE := $(BUILD)/.flags
$(FLAGS_FILE): FORCE
	@mkdir -p $(@D)
	@echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)' | cmp -s - $@ || \
		echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)' > $@
FORCE:

$(BUILD)/%.o: %.c $(FLAGS_FILE)
	@mkdir -p $(@D)
	$(if $(Q),@echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

# --- the common library ------------------------------------------------
COMMON_SRC := $(wildcard modules/common/*.c)
# The password policy embeds the common-password list, generated at build
# time.
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/stoa_common_passwords.o
LIBSTOA := $(BUILD)/libstoa.a

# Remade when the Makefile changes too: .SECONDARY lets make skip a missing
# generated member of an archive that looks newer than its sources.
$(LIBSTOA): $(COMMON_OBJ) Makefile
	$(if $(Q),@echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $(COMMON_OBJ)

# --- programs ----------------------------------------------------------
$(BUILD)/gen/stoa_common_passwords.c: modules/auth/data/common-passwords.txt \
		scripts/gen-wordlist.sh
	@mkdir -p $(@D)
	$(Q)scripts/gen-wordlist.sh $< stoa_common_passwords > $@
# The jobs worker embeds its mail templates the same way.
EXTRA_OBJ_stoa-jobs := $(BUILD)/gen/mail_templates.o
$(BUILD)/gen/mail_templates.c: $(wildcard modules/jobs/templates/*) \
		scripts/gen-templates.sh
	@mkdir -p $(@D)
	$(Q)scripts/gen-templates.sh modules/jobs/templates > $@
$(BUILD)/gen/mail_templates.o: ALL_CFLAGS += -Imodules/jobs
# Each pool's route table comes from the one route manifest.
$(foreach p,$(POOLS),$(eval EXTRA_OBJ_stoa-$(p) := $(BUILD)/gen/routes_$(p).o))
$(BUILD)/gen/routes_%.c: routes.manifest scripts/gen-routes.py
	@mkdir -p $(@D)
	$(Q)python3 scripts/gen-routes.py c $* routes.manifest > $@
$(foreach p,$(POOLS),$(eval $(BUILD)/gen/routes_$(p).o: ALL_CFLAGS += -Imodules/$(p)))
$(BUILD)/gen/%.o: $(BUILD)/gen/%.c $(FLAGS_FILE)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

define program
$(1)_SRC := $$(wildcard modules/$(2)/*.c)
$(1)_OBJ := $$($(1)_SRC:%.c=$$(BUILD)/%.o) $$(EXTRA_OBJ_$(1))
$$(BIN)/$(1): $$($(1)_OBJ) $$(LIBSTOA)
	@mkdir -p $$(@D)
	$$(if $$(Q),@echo "  LD      $$@")
	$$(Q)$$(CC) $$(ALL_LDFLAGS) -o $$@ $$($(1)_OBJ) $$(LIBSTOA) $$(PKG_LIBS)
endef
$(foreach p,$(POOLS),$(eval $(call program,stoa-$(p),$(p))))
$(eval $(call program,stoa-jobs,jobs))
$(eval $(call program,stoactl,stoactl))

# --- unit tests (Check) ------------------------------------------------
UNIT_SRC := $(wildcard tests/unit/check_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIBSTOA)
	@mkdir -p $(@D)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIBSTOA) $(PKG_LIBS) $(CHECK_LIBS)

.PHONY: test-unit
test-unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; CK_DEFAULT_TIMEOUT=30 $$t; done

# --- fuzz harnesses: replayed over their corpus in every test run ------
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
$(BUILD)/fuzz/%: $(BUILD)/tests/fuzz/%.o $(BUILD)/tests/fuzz/replay_main.o $(LIBSTOA)
	@mkdir -p $(@D)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

.PHONY: test-fuzz-replay
test-fuzz-replay: $(FUZZ_REPLAY)
	@set -e; for f in $(FUZZ_REPLAY); do n=$$(basename $$f); \
		echo "== replay $$n"; $$f tests/fuzz/corpus/$${n#fuzz_}; done

FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz: $(BUILD)/gen/stoa_common_passwords.c
	@set -e; mkdir -p build/fuzz; for src in $(FUZZ_SRC); do \
		n=$$(basename $$src .c); t=$${n#fuzz_}; \
		clang -g -O1 -fsanitize=fuzzer,address,undefined $(CPPFLAGS) \
			$(PKG_CFLAGS) $$src $(COMMON_SRC) $< $(PKG_LIBS) \
			-o build/fuzz/$$n; \
		mkdir -p build/fuzz/corpus-$$t; \
		build/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
			build/fuzz/corpus-$$t tests/fuzz/corpus/$$t; \
	done

# --- end to end through nginx over TLS ----------------------------------
.PHONY: test-integration
# tests/integration/run.py runs the files side by side (TEST_JOBS at once);
# TEST_MATCH=regex picks files.
TEST_JOBS ?= 3
test-integration: all
	STOA_BIN_DIR=$(abspath $(BIN)) python3 tests/integration/run.py \
		-j $(TEST_JOBS) $(if $(TEST_MATCH),-k '$(TEST_MATCH)')

# The fake Stripe is a test tool: its own self-test keeps it honest.
.PHONY: test-fakes
test-fakes:
	python3 -m unittest tests/fakes/test_stripe_fake.py

# --- sanitizers --------------------------------------------------------
ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
.PHONY: asan
asan:
	$(Q)$(MAKE) --no-print-directory BUILD=build/asan BIN=build/asan/bin \
		OPT="-O1 -g" SAN="$(ASAN_FLAGS)" all $(ASAN_GOALS)

# --- top-level goals ---------------------------------------------------
.PHONY: deps
deps:
	@scripts/deps.sh

.PHONY: test
test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory format-check check-headers check-routes check-openapi check-ansible test-unit test-gateway-unit test-fuzz-replay test-fakes
	$(Q)$(MAKE) --no-print-directory test-integration
	$(Q)$(MAKE) --no-print-directory asan ASAN_GOALS="test-unit test-gateway-unit test-fuzz-replay test-integration"

.PHONY: run
run: deps
	$(Q)$(MAKE) --no-print-directory all
	@scripts/stack.sh start

.PHONY: stop
stop:
	@scripts/stack.sh stop

# Every bench of SPEC §9 in turn (mk/bench.mk).
.PHONY: bench
bench: bench-all

$(BUILD)/bench/stoa-empty-fcgi: $(BUILD)/tests/bench/empty_fcgi.o
	@mkdir -p $(@D)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ -lfcgi

# Every route of routes.manifest names a handler defined in its file
# (tests/integration/test_routes.py holds the built pools and the running
# stack to the manifest).
.PHONY: check-routes
check-routes:
	$(Q)python3 scripts/gen-routes.py check routes.manifest . && echo "routes ok"

# docs/openapi.yaml passes a real OpenAPI linter (@redocly/cli, pinned in
# scripts/npm/ and fetched by scripts/deps.sh; its rules and their reasons
# in docs/redocly.yaml) and documents exactly the routes of routes.manifest
# (gen-routes.py openapi); tests/docs/ holds both to copies broken on purpose.
REDOCLY := build/vendor/redocly/node_modules/.bin/redocly
.PHONY: check-openapi
check-openapi:
	$(Q)test -x $(REDOCLY) || { echo "check-openapi: no $(REDOCLY) (run scripts/deps.sh)" >&2; exit 1; }
	$(Q)REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
		$(REDOCLY) lint --config docs/redocly.yaml docs/openapi.yaml
	$(Q)python3 scripts/gen-routes.py openapi routes.manifest docs/openapi.yaml
	$(Q)STOA_REDOCLY=$(abspath $(REDOCLY)) python3 -m unittest tests/docs/test_openapi_routes.py
	@echo "openapi ok"

# Every public header compiles on its own.
HEADERS := $(wildcard modules/common/include/stoa/*.h)
.PHONY: check-headers
check-headers:
	@set -e; for h in $(HEADERS); do \
		echo "#include \"$${h#modules/common/include/}\"" | \
		$(CC) $(WARN) $(CPPFLAGS) $(PKG_CFLAGS) -x c -fsyntax-only - ; done
	@echo "headers ok"

FORMAT_SRC = $(wildcard modules/*/*.c modules/*/include/stoa/*.h tests/unit/*.c tests/fuzz/*.c)
.PHONY: format format-check
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	$(Q)clang-format --dry-run --Werror $(FORMAT_SRC) && echo "format ok"

.PHONY: clean
clean:
	rm -rf build bin

-include mk/*.mk
-include $(shell find build -name '*.d' 2>/dev/null)
