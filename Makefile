# ktlsx build.  `make` builds into $(O) (default build/): build/bin, build/lib.
# `make SAN=1 O=build/asan` builds the same tree with ASan+UBSan.
O ?= build
CC ?= cc
CLANG ?= clang

PKGS := libcrypto liburing libnl-genl-3.0
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CFLAGS ?= -O2 -g
CFLAGS += -std=c17 $(WARN) -fPIC -D_GNU_SOURCE -Iinclude -Ilibktlsx $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS := -lcrypto -lpthread
ifeq ($(SAN),1)
CFLAGS += -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif

LIB_SRCS := $(shell find libktlsx -name '*.c' -not -path 'libktlsx/preload/*' | sort)
LIB_OBJS := $(LIB_SRCS:%.c=$(O)/obj/%.o)
CLI_SRCS := $(wildcard cli/*.c)
CLI_OBJS := $(CLI_SRCS:%.c=$(O)/obj/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(O)/tests/%)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(O)/fuzz/%)

.PHONY: all deps run check unit test asan fuzz fuzz-build vm-check clean demo-certs lint
all: $(O)/lib/libktlsx.a $(O)/lib/libktlsx.so $(O)/bin/ktlsx $(UNIT_BINS)

$(O)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(O)/lib/libktlsx.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# ---- 1.0 packaging: exported symbols, soname, install (pkg-config, man pages) ----
# The shared library exports the public API only: objects are compiled with
# hidden visibility (ktlsx.h makes its own declarations default-visible) and
# the version script keeps anything else out, so internal kx_* names cannot
# become ABI by accident.  The static library is built from the same objects;
# hidden visibility does not affect static linking, so tests, fuzzers and
# benchmarks keep reaching internal symbols through it.
SOVERSION := 1
SOLIB := libktlsx.so.$(SOVERSION).0.0
VERSION := $(shell sed -n 's/^\#define KTLSX_VERSION_STRING "\(.*\)"/\1/p' include/ktlsx/ktlsx.h)
$(LIB_OBJS): CFLAGS += -fvisibility=hidden

$(O)/lib/$(SOLIB): $(LIB_OBJS) libktlsx/libktlsx.map
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -Wl,-soname,libktlsx.so.$(SOVERSION) -Wl,--version-script=libktlsx/libktlsx.map \
	  -Wl,--no-undefined -o $@ $(LIB_OBJS) $(LDLIBS)

$(O)/lib/libktlsx.so: $(O)/lib/$(SOLIB)
	ln -sf $(SOLIB) $(O)/lib/libktlsx.so.$(SOVERSION)
	ln -sf libktlsx.so.$(SOVERSION) $@

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig

# Generated at install time: the paths in it are those of this PREFIX.
.PHONY: install uninstall $(O)/ktlsx.pc
$(O)/ktlsx.pc: libktlsx/ktlsx.pc.in
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	  -e 's|@VERSION@|$(VERSION)|g' $< > $@

install: $(O)/lib/libktlsx.a $(O)/lib/libktlsx.so $(O)/bin/ktlsx $(O)/ktlsx.pc
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR)/ktlsx \
	  $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3
	install -m 644 include/ktlsx/*.h $(DESTDIR)$(INCLUDEDIR)/ktlsx/
	install -m 644 $(O)/lib/libktlsx.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(O)/lib/$(SOLIB) $(DESTDIR)$(LIBDIR)/
	ln -sf $(SOLIB) $(DESTDIR)$(LIBDIR)/libktlsx.so.$(SOVERSION)
	ln -sf libktlsx.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libktlsx.so
	install -m 644 $(O)/ktlsx.pc $(DESTDIR)$(PKGCONFIGDIR)/
	install -m 755 $(O)/bin/ktlsx $(DESTDIR)$(BINDIR)/
	install -m 644 docs/man/ktlsx.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 docs/man/libktlsx.3 $(DESTDIR)$(MANDIR)/man3/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/ktlsx/,$(notdir $(wildcard include/ktlsx/*.h)))
	-rmdir $(DESTDIR)$(INCLUDEDIR)/ktlsx
	rm -f $(DESTDIR)$(LIBDIR)/libktlsx.a $(DESTDIR)$(LIBDIR)/$(SOLIB) $(DESTDIR)$(LIBDIR)/libktlsx.so.$(SOVERSION) \
	  $(DESTDIR)$(LIBDIR)/libktlsx.so $(DESTDIR)$(PKGCONFIGDIR)/ktlsx.pc $(DESTDIR)$(BINDIR)/ktlsx \
	  $(DESTDIR)$(MANDIR)/man1/ktlsx.1 $(DESTDIR)$(MANDIR)/man3/libktlsx.3
# ---- end of 1.0 packaging ----

# ---- the tool sees only the public API ----
# cli/ is a user of the library like any other: it is compiled without
# -Ilibktlsx, so an #include of an internal header fails to build instead of
# slipping in (the pattern rule below wins over $(O)/obj/%.o for cli/).
CLI_CFLAGS = $(filter-out -Ilibktlsx,$(CFLAGS))
$(O)/obj/cli/%.o: cli/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CLI_CFLAGS) -MMD -MP -c $< -o $@
# ---- end of the tool's public-API rule ----

$(O)/bin/ktlsx: $(CLI_OBJS) $(O)/lib/libktlsx.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJS) $(O)/lib/libktlsx.a $(LDLIBS)

$(O)/tests/%: tests/unit/%.c $(O)/lib/libktlsx.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-missing-prototypes -o $@ $< $(O)/lib/libktlsx.a $(LDFLAGS) -lcmocka $(LDLIBS)

# libFuzzer targets: clang, ASan+UBSan.  The library is compiled once with
# coverage instrumentation (fuzzer-no-link) and linked into every target.
FUZZ_CFLAGS := -std=c17 -g -O1 -D_GNU_SOURCE -Iinclude -Ilibktlsx -fsanitize=address,undefined \
  -Werror=incompatible-pointer-types -Werror=implicit-function-declaration -Werror=int-conversion
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(O)/fuzz/obj/%.o)
$(O)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@
$(O)/fuzz/libktlsx-fuzz.a: $(FUZZ_LIB_OBJS)
	rm -f $@ && ar rcs $@ $^
$(O)/fuzz/%: tests/fuzz/%.c $(O)/fuzz/libktlsx-fuzz.a
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(O)/fuzz/libktlsx-fuzz.a $(LDLIBS)

fuzz-build: $(FUZZ_BINS)
FUZZ_SECONDS ?= 30
fuzz: fuzz-build
	tests/fuzz/run.sh $(O)/fuzz $(FUZZ_SECONDS)

deps:
	@tools/install-deps.sh

demo-certs: 
	@tools/demo-certs.sh $(O)/demo

run: deps all demo-certs $(O)/demo/www/index.html
	@echo "ktlsx-fileserver on 127.0.0.1:8443 serving $(O)/demo/www; try:"
	@echo "  curl --cacert $(O)/demo/ca.pem https://localhost:8443/"
	$(O)/bin/ktlsx-fileserver --root $(O)/demo/www --listen 127.0.0.1:8443 --cert $(O)/demo/server.pem \
	  --key $(O)/demo/server.key --access-log -

asan:
	$(MAKE) O=build/asan SAN=1 all

unit: all
	tests/run.sh --unit-only

check: deps
	$(MAKE) all
	$(MAKE) asan
	tests/run.sh

vm-check: all
	kmod-tests/run.sh

clean:
	rm -rf build

-include $(shell find $(O)/obj $(O)/fuzz/obj -name '*.d' 2>/dev/null)

# Static analysis of the library and the tool (cppcheck + clang-tidy, config in .clang-tidy).
LINT_SRCS := $(LIB_SRCS) $(CLI_SRCS)
lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance --std=c11 \
	  -Iinclude -Ilibktlsx --suppress=missingIncludeSystem $(LINT_SRCS)
	@out=$$(for f in $(LINT_SRCS); do clang-tidy --quiet $$f -- -std=c17 -D_GNU_SOURCE -Iinclude -Ilibktlsx \
	  $(shell pkg-config --cflags libnl-genl-3.0) 2>&1; done | grep -E 'warning:|error:'); \
	  if [ -n "$$out" ]; then echo "$$out"; exit 1; else echo "lint: clean"; fi

# Benchmarks (bench/, docs/benchmarks.md): ktlsx vs OpenSSL measured in the same run.
# Only the bench binaries link libssl (the reference); libktlsx never does.
BENCH_SRCS := $(wildcard bench/bench_*.c)
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(O)/bench/%)
$(O)/bench/%: bench/%.c bench/bench.h $(O)/lib/libktlsx.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(O)/lib/libktlsx.a $(LDFLAGS) -lssl $(LDLIBS)

.PHONY: bench
BENCH_SECONDS ?= 2
bench: all $(BENCH_BINS)
	BENCH_SECONDS=$(BENCH_SECONDS) bench/run.sh $(O)

# ---- examples (examples/: echo-server, https-get) and their concurrency test (issue 7) ----
# The examples link the shared library, as a user's program does: the link then
# fails if an example reaches past the public API (libktlsx.so exports ktlsx_*
# only), and the rpath finds the library of the same build tree, plain or ASan,
# without LD_LIBRARY_PATH.  The test driver links libssl (as bench/ does, for
# the OpenSSL clients) and the static library, like the other test programs.
EXAMPLE_SRCS := $(wildcard examples/*.c)
EXAMPLE_BINS := $(EXAMPLE_SRCS:examples/%.c=$(O)/bin/%)
all: $(EXAMPLE_BINS) $(O)/tests/echo_load
$(EXAMPLE_BINS): $(O)/bin/%: $(O)/obj/examples/%.o $(O)/lib/libktlsx.so
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< -L$(O)/lib -lktlsx -Wl,-rpath,'$$ORIGIN/../lib'
$(O)/tests/echo_load: tests/examples/echo_load.c $(O)/lib/libktlsx.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(O)/lib/libktlsx.a $(LDFLAGS) -lssl $(LDLIBS)
LINT_SRCS += $(EXAMPLE_SRCS)
# ---- end of examples ----

# ---- ktlsxd, the handshake daemon (issue 8): daemon/ -> $(O)/bin/ktlsxd ----
# Like the tool, the daemon sees the public API only (no -Ilibktlsx) and
# links the static library; libinih reads its configuration.  Its test
# driver (tests/daemon/door_load.c) links the static library too.
DAEMON_SRCS := $(wildcard daemon/*.c)
DAEMON_OBJS := $(DAEMON_SRCS:%.c=$(O)/obj/%.o)
all: $(O)/bin/ktlsxd $(O)/bin/ktlsxctl $(O)/tests/door_load
$(O)/obj/daemon/%.o: daemon/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CLI_CFLAGS) -MMD -MP -c $< -o $@
$(O)/bin/ktlsxd: $(DAEMON_OBJS) $(O)/lib/libktlsx.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(DAEMON_OBJS) $(O)/lib/libktlsx.a -linih -luring -lseccomp $(KDOOR_LIBS) $(LDLIBS)
# ktlsxctl speaks the control socket's text protocol: no library needed.
$(O)/bin/ktlsxctl: daemon/ctl/ktlsxctl.c
	@mkdir -p $(dir $@)
	$(CC) $(CLI_CFLAGS) $(LDFLAGS) -o $@ $<
$(O)/tests/door_load: tests/daemon/door_load.c $(O)/lib/libktlsx.a
	@mkdir -p $(dir $@)
	$(CC) $(CLI_CFLAGS) -o $@ $< $(O)/lib/libktlsx.a $(LDFLAGS) $(LDLIBS)
LINT_SRCS += $(DAEMON_SRCS) daemon/ctl/ktlsxctl.c
# tests/unit/test_daemon_conf.c compiles daemon/conf.c in: it needs libinih too.
$(O)/tests/test_daemon_conf: LDLIBS += -linih
$(O)/tests/test_daemon_conf: daemon/conf.c daemon/ktlsxd.h
$(O)/fuzz/fuzz_daemon_conf: LDLIBS += -linih
$(O)/fuzz/fuzz_daemon_conf: daemon/conf.c daemon/ktlsxd.h
# make install: the daemon, ktlsxctl, their man pages, the systemd units (with
# this PREFIX's sbin in ExecStart), the tls module at boot, the example config.
SBINDIR ?= $(PREFIX)/sbin
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
MODULESLOADDIR ?= $(PREFIX)/lib/modules-load.d
DOCDIR ?= $(PREFIX)/share/doc/ktlsx
DAEMON_INSTALLED := $(SBINDIR)/ktlsxd $(SBINDIR)/ktlsxctl $(MANDIR)/man8/ktlsxd.8 $(MANDIR)/man8/ktlsxctl.8 \
  $(MANDIR)/man5/ktlsxd.conf.5 $(SYSTEMDUNITDIR)/ktlsxd.service $(SYSTEMDUNITDIR)/ktlsxd.socket \
  $(MODULESLOADDIR)/ktlsx.conf $(DOCDIR)/ktlsxd.conf.example
install: install-daemon
.PHONY: install-daemon uninstall-daemon
install-daemon: $(O)/bin/ktlsxd $(O)/bin/ktlsxctl
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSTEMDUNITDIR) \
	  $(DESTDIR)$(MODULESLOADDIR) $(DESTDIR)$(DOCDIR)
	install -m 755 $(O)/bin/ktlsxd $(O)/bin/ktlsxctl $(DESTDIR)$(SBINDIR)/
	install -m 644 docs/man/ktlsxd.8 docs/man/ktlsxctl.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 docs/man/ktlsxd.conf.5 $(DESTDIR)$(MANDIR)/man5/
	sed 's|@SBINDIR@|$(SBINDIR)|g' daemon/systemd/ktlsxd.service >$(DESTDIR)$(SYSTEMDUNITDIR)/ktlsxd.service
	install -m 644 daemon/systemd/ktlsxd.socket $(DESTDIR)$(SYSTEMDUNITDIR)/
	echo tls >$(DESTDIR)$(MODULESLOADDIR)/ktlsx.conf
	install -m 644 daemon/ktlsxd.conf.example $(DESTDIR)$(DOCDIR)/
uninstall: uninstall-daemon
uninstall-daemon:
	rm -f $(addprefix $(DESTDIR),$(DAEMON_INSTALLED))
	-rmdir $(DESTDIR)$(DOCDIR)
# ---- end of ktlsxd ----

# ---- ktlsxd kernel door (issue 9): daemon/door_kernel.c + daemon/hsnl.c ----
# libnl-genl resolves the `handshake` family and its tlshd group; the messages
# themselves are hsnl.c's (tests/unit/test_daemon_hsnl.c compiles it in).
KDOOR_LIBS := $(shell pkg-config --libs libnl-genl-3.0 2>/dev/null)
$(O)/tests/test_daemon_hsnl: daemon/hsnl.c daemon/hsnl.h
$(O)/fuzz/fuzz_hsnl: daemon/hsnl.c daemon/hsnl.h
# ---- end of ktlsxd kernel door ----

# ---- the preload shim (issue 10): preload/ -> $(O)/lib/libktlsx-preload.so ----
# A top-level folder, not libktlsx/preload/: the shim is a program-like user of
# the public API (compiled without -Ilibktlsx, like the tool and the daemon),
# not part of the library; libktlsx.a is linked into the .so, whose version
# script exports the interposed libc calls only (the library objects are
# already -fvisibility=hidden, and so are the shim's own).
PRELOAD_SRCS := $(wildcard preload/*.c)
PRELOAD_OBJS := $(PRELOAD_SRCS:%.c=$(O)/obj/%.o)
all: $(O)/lib/libktlsx-preload.so
$(O)/obj/preload/%.o: preload/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CLI_CFLAGS) -fvisibility=hidden -MMD -MP -c $< -o $@
$(O)/lib/libktlsx-preload.so: $(PRELOAD_OBJS) $(O)/lib/libktlsx.a preload/preload.map
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -Wl,--version-script=preload/preload.map -Wl,--no-undefined -Wl,-z,nodelete \
	  -o $@ $(PRELOAD_OBJS) $(O)/lib/libktlsx.a $(LDLIBS) -ldl
LINT_SRCS += $(PRELOAD_SRCS)
# tests/preload/epoll_http.c: a plaintext event-loop HTTP server/client for the shim to wrap (no library).
all: $(O)/tests/preload_epoll_http
$(O)/tests/preload_epoll_http: tests/preload/epoll_http.c
	@mkdir -p $(dir $@)
	$(CC) $(CLI_CFLAGS) -o $@ $< $(LDFLAGS)
# tests/unit/test_preload_rules.c and tests/fuzz/fuzz_preload_rules.c compile preload/rules.c in.
$(O)/tests/test_preload_rules: preload/rules.c preload/preload.h
$(O)/fuzz/fuzz_preload_rules: preload/rules.c preload/preload.h
# ---- end of the preload shim ----

# ---- ktlsx-fileserver (issue 11): fileserver/ -> $(O)/bin/ktlsx-fileserver ----
# Public API only (no -Ilibktlsx), the static library, liburing.  The unit test
# (tests/unit/test_http.c) and the fuzz target (tests/fuzz/fuzz_http_request.c)
# compile fileserver/http.c in with an #include, as test_daemon_conf does conf.c.
FS_SRCS := $(wildcard fileserver/*.c)
FS_OBJS := $(FS_SRCS:%.c=$(O)/obj/%.o)
all: $(O)/bin/ktlsx-fileserver
$(O)/obj/fileserver/%.o: fileserver/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CLI_CFLAGS) -MMD -MP -c $< -o $@
$(O)/bin/ktlsx-fileserver: $(FS_OBJS) $(O)/lib/libktlsx.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(FS_OBJS) $(O)/lib/libktlsx.a -luring $(LDLIBS)
LINT_SRCS += $(FS_SRCS)
$(O)/tests/test_http: fileserver/http.c fileserver/http.h
$(O)/fuzz/fuzz_http_request: fileserver/http.c fileserver/http.h
# `make run`'s demo directory.
$(O)/demo/www/index.html:
	@mkdir -p $(dir $@)
	@printf '<!doctype html>\n<title>ktlsx-fileserver</title>\n<h1>Hello from ktlsx-fileserver</h1>\n<p>Served over TLS by libktlsx: kernel TLS where the kernel has it, user-space records otherwise.</p>\n' >$@
	@printf 'ktlsx-fileserver demo: a plain text file.\n' >$(dir $@)hello.txt
# ---- end of ktlsx-fileserver ----

# ---- ktlsx-load, the load generator (issue 11): loadgen/ -> $(O)/bin/ktlsx-load ----
# Like the tool and the daemon it sees the public API only (no -Ilibktlsx)
# and links the static library.  bench/server.sh and tests/loadgen/ use it.
LOADGEN_SRCS := $(wildcard loadgen/*.c)
LOADGEN_OBJS := $(LOADGEN_SRCS:%.c=$(O)/obj/%.o)
all: $(O)/bin/ktlsx-load
$(O)/obj/loadgen/%.o: loadgen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CLI_CFLAGS) -MMD -MP -c $< -o $@
$(O)/bin/ktlsx-load: $(LOADGEN_OBJS) $(O)/lib/libktlsx.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(LOADGEN_OBJS) $(O)/lib/libktlsx.a $(LDLIBS)
LINT_SRCS += $(LOADGEN_SRCS)
# tests/unit/test_loadgen_hist.c compiles loadgen/hist.c in.
$(O)/tests/test_loadgen_hist: loadgen/hist.c loadgen/load.h
# `make bench` ends with server capacity on one core (bench/run.sh calls
# bench/server.sh after the library benchmarks, never in parallel with them):
# nginx, openssl s_server and ktlsx-fileserver (FILESERVER=path, default
# $(O)/bin/ktlsx-fileserver when built).  `make bench-server` runs that part alone.
.PHONY: bench-server
bench-server: all
	bench/server.sh $(O)
# ---- end of ktlsx-load ----

# ---- fleet: memcached session store (issue 12) ----
# libktlsx's session/memcached.c links libmemcached: every link of the library gets it.
# MEMCACHED=0 builds without it: ktlsx_config_set_memcached_store (ktlsxd's and the tools'
# session_cache = memcached:...) then fails with "built without memcached support".
MEMCACHED ?= 1
ifeq ($(MEMCACHED),1)
LDLIBS += -lmemcached
else
CFLAGS += -DKTLSX_NO_MEMCACHED
endif
FLEET_TEST_DEPS := $(O)/bin/ktlsx $(O)/bin/ktlsxd $(O)/bin/ktlsxctl $(O)/bin/ktlsx-fileserver
.PHONY: fleet-test
fleet-test: $(FLEET_TEST_DEPS)
	tests/fleet/fleet.sh
# `make bench` runs the fleet rows first (a prerequisite of bench, so before bench/run.sh and
# never beside it): full vs resumed handshakes/s over three file servers with and without the
# shared store / ticket key file.  `make bench-fleet` alone; NO_FLEET_BENCH=1 skips it.
.PHONY: bench-fleet
bench: bench-fleet
bench-fleet: all
	@if [ "$(NO_FLEET_BENCH)" = 1 ]; then echo "bench-fleet: skipped (NO_FLEET_BENCH=1)"; else bench/fleet.sh $(O); fi
# ---- end of fleet ----

# ---- vm-bench (issue 11) ----
# `make vm-bench`: ONE VM (VM_BENCH_KERNEL, default backports, the newest) runs
# kmod-tests/bench/ instead of the suite: ktlsx-fileserver vs nginx + kTLS vs
# nginx user-space TLS, and the raw kernel-TLS sendfile ceiling (this tool,
# bench/vm_ktls_ceiling.c, public API only).  Never part of make check.
# Results: build/vm-bench/ (table, raw log, PNG); docs/benchmarks.md explains.
VM_BENCH_KERNEL ?= backports
$(O)/bench/ktlsx-ktls-ceiling: bench/vm_ktls_ceiling.c $(O)/lib/libktlsx.a
	@mkdir -p $(dir $@)
	$(CC) $(CLI_CFLAGS) -o $@ $< $(O)/lib/libktlsx.a $(LDFLAGS) -lpthread $(LDLIBS)
LINT_SRCS += bench/vm_ktls_ceiling.c
.PHONY: vm-bench
vm-bench: all $(O)/bench/ktlsx-ktls-ceiling
	KTLSX_BUILD=$(O) KMOD_BENCH=1 kmod-tests/run.sh $(VM_BENCH_KERNEL)
# `make vm-bench-kdoor` (issue 9): the kernel door's suite (60) alone, in a VM with
# VM_KDOOR_SMP vCPUs (6: a controller of 16 I/O queues, which make check's 2 vCPUs cannot
# hold), tlshd and ktlsxd side by side; its "side by side" INFO lines are the table of
# docs/benchmarks.md.  VM_KDOOR_KERNEL picks the kernel, KMOD_PERF=1 adds perf profiles.
VM_KDOOR_KERNEL ?= trixie
VM_KDOOR_SMP ?= 6
.PHONY: vm-bench-kdoor
vm-bench-kdoor: all
	KTLSX_BUILD=$(O) KMOD_SMP=$(VM_KDOOR_SMP) KMOD_ONLY=60 kmod-tests/run.sh $(VM_KDOOR_KERNEL) | \
		tee $(O)/vm-bench-kdoor.txt | grep -E 'side by side|^(PASS|FAIL|SKIP)|passed'
# ---- end of vm-bench ----
