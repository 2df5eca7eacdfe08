# The nginx gateway module (gateway/), built against Debian's nginx.
#
#   make gateway         build/gateway/ngx_http_api_gateway_module.so
#   make test-gateway    unit tests (cache, verify, guard), nginx -t checks,
#                        end to end
#   make bench-gateway   first verification vs cached repeat (SPEC §9)
#
# nginx-dev ships nginx's headers and configure scripts, not its sources:
# the tree is copied into build/, configured with the very flags Debian
# built its nginx with (conf_flags, including --with-compat, so that
# load_module accepts the result) and only `make modules` is run. nginx
# compiles the module with its own warning flags (-W -Wall -Werror).

GATEWAY_NGINX_SRC ?= /usr/share/nginx/src
GATEWAY_DIR := build/gateway
GATEWAY_SO := $(GATEWAY_DIR)/ngx_http_api_gateway_module.so
GATEWAY_TREE := $(GATEWAY_DIR)/nginx

# Debian's compiler and linker options (nginx -V) minus its build path.
GATEWAY_CC_OPT := -g -O2 -fstack-protector-strong -Wformat \
	-Werror=format-security -fPIC -Wdate-time -D_FORTIFY_SOURCE=2
GATEWAY_LD_OPT := -Wl,-z,relro -Wl,-z,now -fPIC

# What the module is compiled from: its own files and the shared core.
GATEWAY_INPUTS := $(wildcard gateway/*.c gateway/*.h) \
	$(addprefix modules/common/,jwt.c crypto.c buf.c arena.c core.c \
		metrics.c) \
	$(addprefix modules/common/include/stoa/,jwt.h crypto.h buf.h arena.h \
		core.h metrics.h)

.PHONY: gateway
gateway: $(GATEWAY_SO)

$(GATEWAY_TREE)/objs/Makefile: gateway/config mk/gateway.mk \
		$(GATEWAY_NGINX_SRC)/conf_flags
	@test -r $(GATEWAY_NGINX_SRC)/conf_flags || \
		{ echo "nginx-dev is not installed ($(GATEWAY_NGINX_SRC))" >&2; exit 1; }
	$(if $(Q),@echo "  CONFIGURE nginx module")
	$(Q)rm -rf $(GATEWAY_TREE) && mkdir -p $(GATEWAY_TREE)
	$(Q)cp -R $(GATEWAY_NGINX_SRC)/. $(GATEWAY_TREE)/
	$(Q)cd $(GATEWAY_TREE) && bash -c '. ./conf_flags && \
		./configure "$${NGX_CONF_FLAGS[@]}" \
			--with-cc-opt="$(GATEWAY_CC_OPT)" \
			--with-ld-opt="$(GATEWAY_LD_OPT)" \
			--add-dynamic-module=$(abspath gateway)' \
		>configure.log 2>&1 || { tail -n 30 configure.log >&2; exit 1; }

$(GATEWAY_SO): $(GATEWAY_TREE)/objs/Makefile $(GATEWAY_INPUTS)
	$(if $(Q),@echo "  NGINX   $@")
	$(Q)$(MAKE) --no-print-directory -C $(GATEWAY_TREE) -f objs/Makefile \
		modules $(if $(Q),>$(GATEWAY_TREE)/build.log 2>&1 || \
		{ cat $(GATEWAY_TREE)/build.log >&2; exit 1; })
	$(Q)cp $(GATEWAY_TREE)/objs/ngx_http_api_gateway_module.so $@.tmp
	$(Q)mv $@.tmp $@

# --- tests ---------------------------------------------------------------
# The cache and check path are plain C, so they are also built with the
# project's own (stricter) flags for the unit tests and the benchmark.
$(BUILD)/gateway/ngx_http_api_gateway_cache.o: ALL_CFLAGS += -Igateway
$(BUILD)/gateway/ngx_http_api_gateway_verify.o: ALL_CFLAGS += -Igateway
$(BUILD)/gateway/ngx_http_api_gateway_guard.o: ALL_CFLAGS += -Igateway
$(BUILD)/tests/gateway/%.o: ALL_CFLAGS += -Igateway
$(BUILD)/tests/bench/bench_gateway.o: ALL_CFLAGS += -Igateway

GATEWAY_CHECK := $(BUILD)/tests/gateway/check_gateway_cache
$(GATEWAY_CHECK): $(BUILD)/tests/gateway/check_gateway_cache.o \
		$(BUILD)/gateway/ngx_http_api_gateway_cache.o $(LIBSTOA)
	@mkdir -p $(@D)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CHECK_LIBS)

# The Bearer, refusal and role checks, and the guard around the shared
# core: linked, like the module, with the core's allocation functions sent
# to the guard (the list in gateway/config), and with malloc, calloc and
# realloc sent to the suite, which makes them fail on demand.
comma := ,
GATEWAY_WRAP := $(addprefix -Wl$(comma)--wrap=,stoa_xmalloc stoa_xcalloc \
	stoa_xrealloc stoa_xstrdup stoa_assert_fail)
GATEWAY_CHECK_VERIFY := $(BUILD)/tests/gateway/check_gateway_verify
$(GATEWAY_CHECK_VERIFY): $(BUILD)/tests/gateway/check_gateway_verify.o \
		$(BUILD)/gateway/ngx_http_api_gateway_verify.o \
		$(BUILD)/gateway/ngx_http_api_gateway_guard.o \
		$(BUILD)/gateway/ngx_http_api_gateway_cache.o $(LIBSTOA)
	@mkdir -p $(@D)
	$(Q)$(CC) $(ALL_LDFLAGS) $(GATEWAY_WRAP) \
		-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc \
		-o $@ $^ $(PKG_LIBS) $(CHECK_LIBS)

.PHONY: test-gateway
.PHONY: test-gateway-unit
test-gateway-unit: $(GATEWAY_CHECK) $(GATEWAY_CHECK_VERIFY)
	@set -e; for t in $(GATEWAY_CHECK) $(GATEWAY_CHECK_VERIFY); do \
		echo "== $$t"; CK_DEFAULT_TIMEOUT=60 $$t; done

test-gateway: all test-gateway-unit
	STOA_BIN_DIR=$(abspath $(BIN)) STOA_GATEWAY_MODULE=$(abspath $(GATEWAY_SO)) \
		python3 -m unittest discover -s tests/integration \
		-p 'test_gateway.py' -v

# --- benchmark -------------------------------------------------------------
GATEWAY_BENCH := $(BUILD)/bench/bench_gateway
$(GATEWAY_BENCH): $(BUILD)/tests/bench/bench_gateway.o \
		$(BUILD)/gateway/ngx_http_api_gateway_guard.o \
		$(BUILD)/gateway/ngx_http_api_gateway_cache.o $(LIBSTOA)
	@mkdir -p $(@D)
	$(Q)$(CC) $(ALL_LDFLAGS) $(GATEWAY_WRAP) -o $@ $^ $(PKG_LIBS)

.PHONY: bench-gateway
bench-gateway: $(GATEWAY_BENCH)
	$(GATEWAY_BENCH)
