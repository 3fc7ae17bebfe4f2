# kubesalt -- the two commands: `make lab` (a real cluster on local nspawn nodes) and `make test`.
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
export VENV
PYTEST_ARGS ?=
BASETEMP ?= /tmp/kubesalt-test

.PHONY: test unit integration deps lint format bench lab lab-down lab-status lab-test lab-test-core lab-summary \
	lab-conformance lab-conformance-fast clean

## make test: install what the suite needs (apt + venv), lint (ruff, settings in pyproject.toml), then run unit and
## integration tests (~15 min on 2 cores; the 15 slowest tests are listed at the end).
test: deps lint
	rm -rf $(BASETEMP)
	@rc=0; $(VENV)/bin/python -m pytest --basetemp=$(BASETEMP) -p no:cacheprovider --durations=15 $(PYTEST_ARGS) || rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests -- that is a failure here" >&2; fi; \
	  exit $$rc

unit: deps
	$(VENV)/bin/python -m pytest tests/unit --basetemp=$(BASETEMP) -p no:cacheprovider $(PYTEST_ARGS)

integration: deps
	$(VENV)/bin/python -m pytest tests/integration --basetemp=$(BASETEMP) -p no:cacheprovider $(PYTEST_ARGS)

## make test-kube: k8s_kube against a real etcd + kube-apiserver 1.20 (tests/kube, ~45 s). Builds the Kubernetes
## binaries first when they are not cached (tests/lab/build/kubernetes.sh, ~13 min once); KUBESALT_KUBE_BIN_DIR
## points at binaries of your own instead.
.PHONY: test-kube
test-kube: deps
	@if [ -z "$$KUBESALT_KUBE_BIN_DIR" ]; then bash tests/lab/build/kubernetes.sh; fi
	$(VENV)/bin/python -m pytest tests/kube --basetemp=$(BASETEMP)-kube -p no:cacheprovider $(PYTEST_ARGS)

deps:
	@bash tests/bootstrap.sh

## make lint: ruff check + ruff format --check over the whole tree (pyproject.toml); `make format` rewrites.
lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: deps
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## make lab: nodes (systemd-nspawn) + artifact mirror + salt-master on a private bridge, then
## `salt-run state.orchestrate k8s.cluster` (LAB_ORCHESTRATE=0 skips it; LAB_MASTERS/LAB_WORKERS size a new lab;
## LAB_PROFILE=current (default: etcd 3.5, containerd 1.7, runc 1.3, CNI 1.9 on trixie nodes), bookworm, or
## old-components (bookworm's set on trixie nodes: the cluster tests/lab/test_upgrade_under_load.py upgrades).
lab:
	@bash tests/lab/lab.sh up

lab-down:
	@bash tests/lab/lab.sh down

lab-status:
	@bash tests/lab/lab.sh status

## make lab-test: tests/lab against the running lab (make lab first): nodes, etcd, encryption at rest, pods across
## nodes, Services, logs/exec, kubelet limits, a no-op re-run, a node restart, a new worker.
lab-test: deps
	$(VENV)/bin/python -m pytest tests/lab -m lab -p no:cacheprovider -rs $(PYTEST_ARGS)

## make lab-test-core: the core lab checks CI runs (nodes Ready with roles and taints, pods across nodes, ClusterIP
## + NodePort, logs/exec, a Secret encrypted in etcd, CRDs + an admission webhook without an apiserver restart, a
## second orchestration with zero changes).
lab-test-core: deps
	$(VENV)/bin/python -m pytest tests/lab -m "lab and core" -p no:cacheprovider -rs $(PYTEST_ARGS)

## make lab-summary: bench/fault_summary.py on the running lab -- load on the cluster while every bad input, fault
## and security attempt is thrown at it; prints load held, faults survived, bad inputs tried, data lost (~10 min).
lab-summary: deps
	$(VENV)/bin/python bench/fault_summary.py

## make lab-conformance: the upstream Kubernetes conformance suite (1.20.2's e2e.test, focus [Conformance]) against
## the running lab (make lab first). Builds e2e.test, ginkgo, agnhost and the test images once (cached), preloads the
## images through the formula's k8s:container_runtime:images, runs the suite and writes a JUnit report and a table by
## SIG (passed / failed / not runnable here) to build/conformance/latest/. CONFORMANCE=fast runs the CI subset
## (tests/lab/conformance.json); CONFORMANCE_ARGS passes more options (tests/lab/lab.sh conformance --help).
CONFORMANCE ?= all
CONFORMANCE_ARGS ?=
lab-conformance: deps
	@bash tests/lab/lab.sh conformance --subset $(CONFORMANCE) $(CONFORMANCE_ARGS)

## make lab-conformance-fast: the CI subset of the conformance suite (tests/lab/conformance.json: fast), the lab tier's
## step after make lab-test-core; same builds, preload and report as make lab-conformance.
lab-conformance-fast: deps
	@bash tests/lab/lab.sh conformance --subset fast $(CONFORMANCE_ARGS)

clean:
	rm -rf $(VENV) $(BASETEMP) build *.egg-info
