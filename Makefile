# mnovs: the two entry points of the README, and their pieces.
# Each target installs what it needs first (scripts/install.sh, idempotent).

PYTHON := .venv/bin/python

.PHONY: install demo test unit integration bench bench-of bench-vxlan bench-sflow bench-recirc scale clean

install:
	@bash scripts/install.sh

demo: install
	$(PYTHON) experiments/demo.py

test: install
	$(PYTHON) -m pytest tests -v -ra

unit: install
	$(PYTHON) -m pytest tests/unit -q

integration: install
	$(PYTHON) -m pytest tests/integration -v -ra

bench: install
	$(PYTHON) experiments/bench_switches.py

bench-of: install
	$(PYTHON) experiments/bench_openflow.py

bench-vxlan: install
	$(PYTHON) experiments/bench_vxlan.py

bench-sflow: install
	$(PYTHON) experiments/bench_sflow.py

bench-recirc: install
	$(PYTHON) experiments/bench_recirc.py

scale: install
	$(PYTHON) experiments/scale_linear.py

clean:
	rm -rf .venv *.egg-info .pytest_cache experiments/results
