# The benchmarks of SPEC §9 (tests/bench/, see tests/bench/README.md).
#
#   make bench            every bench in turn: the FastCGI hop at 64, 256
#                         and 1000 connections, login vs raw Argon2id,
#                         Stripe webhooks, the outbox, 10,000 idle TLS
#                         clients, pool memory over 1M requests, the
#                         fan-out of a product update to 100k accounts,
#                         the metrics' cost per request and GET /v1/me
#                         with metrics on and off
#   make bench-hop | bench-login | bench-webhooks | bench-outbox |
#        bench-connections | bench-memory | bench-updates |
#        bench-realtime | bench-events | bench-metrics   one of them
#   make bench-metrics-me GET /v1/me with metrics on and off, alone
#   make bench-peer       GET /v1/me against a FastAPI peer
#   make bench-restore    backup and restore of a ~1 GB database (not part
#                         of make bench: it writes ~3 GB and takes minutes)
#
# Each prints its figures against a ceiling measured in the same run and
# PASS/FAIL per bar; a missed bar is an error only with BENCH_STRICT=1.
# The benches' own packages come from `scripts/deps.sh bench`.

BENCH_DIR := $(BUILD)/bench
BENCH_PROGRAMS := $(BENCH_DIR)/stoa-empty-fcgi $(BENCH_DIR)/stoa-argon2-rate \
	$(BENCH_DIR)/stoa-metrics-cost
BENCH_ENV = STOA_BIN_DIR=$(abspath $(BIN)) STOA_BENCH_BIN=$(abspath $(BENCH_DIR))
BENCH_PY := tests/bench/login.py tests/bench/webhooks.py tests/bench/outbox.py \
	tests/bench/connections.py tests/bench/memory.py tests/bench/updates.py \
	tests/bench/realtime.py tests/bench/events.py tests/bench/metrics_me.py

$(BENCH_DIR)/stoa-argon2-rate: $(BUILD)/tests/bench/argon2_rate.o
	@mkdir -p $(@D)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

# The metrics' cost per request (tests/bench/metrics_cost.c).
$(BENCH_DIR)/stoa-metrics-cost: $(BUILD)/tests/bench/metrics_cost.o $(LIBSTOA)
	@mkdir -p $(@D)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIBSTOA) $(PKG_LIBS)

.PHONY: bench-deps bench-build
bench-deps:
	@scripts/deps.sh bench
bench-build: bench-deps
	$(Q)$(MAKE) --no-print-directory all $(BENCH_PROGRAMS)

# Every bench runs even when one before it failed; the status is the
# worst of them.
.PHONY: bench-all
bench-all: bench-build
	@rc=0; \
	$(BENCH_ENV) tests/bench/run.sh || rc=$$?; \
	$(BENCH_DIR)/stoa-metrics-cost || rc=$$?; \
	for b in $(BENCH_PY); do $(BENCH_ENV) python3 $$b || { s=$$?; [ $$s -gt $$rc ] && rc=$$s; }; done; \
	exit $$rc

.PHONY: bench-hop
bench-hop: bench-build
	$(BENCH_ENV) tests/bench/run.sh

# The counting calls alone, then the /v1/me ratio with metrics on against
# metrics off on one stack (tests/bench/metrics_me.py).
.PHONY: bench-metrics
bench-metrics: bench-build
	@rc=0; $(BENCH_DIR)/stoa-metrics-cost || rc=$$?; \
	$(BENCH_ENV) python3 tests/bench/metrics_me.py || { s=$$?; [ $$s -gt $$rc ] && rc=$$s; }; \
	exit $$rc

.PHONY: bench-metrics-me
bench-metrics-me: bench-build
	$(BENCH_ENV) python3 tests/bench/metrics_me.py

.PHONY: bench-login bench-webhooks bench-outbox bench-connections bench-memory bench-updates bench-realtime bench-events
bench-login bench-webhooks bench-outbox bench-connections bench-memory bench-updates bench-realtime bench-events: bench-%: bench-build
	$(BENCH_ENV) python3 tests/bench/$*.py

.PHONY: bench-peer
bench-peer: bench-build
	$(BENCH_ENV) python3 tests/bench/peer.py

# The benches' own tests: their reading of wrk and their verdicts, and the
# FastAPI peer doing the same work as stoa (skipped without its packages).
.PHONY: test-bench
test-bench: all
	STOA_BIN_DIR=$(abspath $(BIN)) python3 -m unittest discover -s tests/bench \
		-p 'test_*.py' -v

# Backup and restore of a ~1 GB database (tests/bench/restore.py); the
# figure docs/operations.md gives for the RTO.
.PHONY: bench-restore
bench-restore: bench-build
	$(BENCH_ENV) python3 tests/bench/restore.py
