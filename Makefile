# qemu-colo: COLO for QEMU 10.0.13, built from pristine upstream + our files + our patches.
#
#   make          set up the machine (once), assemble the tree, build QEMU
#   make demo     the main job: qemu-colo-ctl starts and protects a pair of the
#                 test guest from tests/colo/e2e/demo-pair.conf on a namespaced
#                 network, HeartBeat agents on both nodes, a client on one TCP
#                 connection, the primary killed, failover by the agent, one-step
#                 re-protection
#   make demo-basic  the pair without network or disks (no root features needed)
#   make check    all our tests; prints "N passed, N failed"
#   make bench    benchmark figures
#   make check-kvm  the KVM runs (tests/colo/run-kvm-tests.sh): skipped, with
#                 the reason, where /dev/kvm is not usable
#   make install  PREFIX=/usr/local (DESTDIR honoured): QEMU under
#                 PREFIX/libexec/qemu-colo, the tools in PREFIX/bin, the OCF
#                 agent, the docs (assembly/install.sh)
#   make soak     fault trials of a protected pair (kill -9, SIGSTOP, link cut,
#                 idle and at each checkpoint fault point), a table of what
#                 passed; about 10 minutes (a failed trial adds about 2), not
#                 part of make check
#                 (SOAK_TRIALS=N trials per case, default 3; SOAK_ARGS: more
#                 arguments of tests/colo/e2e/soak.py, e.g. case names)
#
# Outputs live in build/ (build/src: assembled tree, build/qemu: ninja build dir);
# the pinned upstream tarball, its pristine unpacked copy and the test guest are
# cached in ~/.cache/qemu-colo (QEMU_COLO_CACHE).

PYTHON ?= /usr/bin/python3
export PYTHON

.PHONY: all setup assemble build guest check demo demo-basic bench soak install check-kvm clean distclean

all: build

setup:
	@bash assembly/setup.sh

assemble: setup
	@bash assembly/assemble.sh

build: assemble
	@bash assembly/build.sh

guest: setup
	@bash tests/colo/guest/build-guest.sh
	@bash tests/colo/guest/build-guest.sh generic
	@$(PYTHON) tests/colo/guest/build-bootsect.py

check: build guest
	@bash tests/colo/run-tests.sh $(SUITES)

demo: build guest
	@$(PYTHON) tests/colo/e2e/demo.py

demo-basic: build guest
	@$(PYTHON) tests/colo/demo.py

bench: build guest
	@bash bench/run.sh

soak: build guest
	@$(PYTHON) tests/colo/e2e/soak.py $(SOAK_ARGS)

check-kvm: build guest
	@bash tests/colo/run-kvm-tests.sh

install: build
	@bash assembly/install.sh

clean:
	rm -rf build

distclean: clean
	rm -rf $${QEMU_COLO_CACHE:-$$HOME/.cache/qemu-colo}
