# pgautodumper — every target sets itself up; `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test bench lint format package schema checkov tf-check image clean smoke-aws

install: $(STAMP)

# Re-installs only when pyproject.toml changes: quick when already done.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: install
	$(BIN)/pgautodumper local-run

test: install
	$(BIN)/pytest

bench: install
	PYTHONPATH=. $(BIN)/python bench/bench.py
	PYTHONPATH=. $(BIN)/python bench/status_bench.py

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

package: install
	$(BIN)/python scripts/package_lambdas.py

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache

# Regenerates schema/backup-request.schema.json from the contract (a test checks it is current).
schema: install
	$(BIN)/python scripts/backup_request_schema.py

# Terraform checks by hand (make test runs them too); checkov lives in its own venv.
checkov:
	scripts/checkov.sh -d terraform --framework terraform --compact

tf-check:
	eval "$$(scripts/terraform_env.sh)" && cd terraform/examples/local && terraform init -backend=false && terraform validate

# Needs a Docker engine (none on the CI machines: there the Dockerfile is linted and the entrypoint tested).
image:
	docker build -f task_image/Dockerfile -t pgautodumper:$$(git rev-parse --short HEAD) .

# The whole system in your own AWS account, then destroyed (terraform/README.md, "Smoke test
# in your account"): SMOKE_SECRET_ARN, SMOKE_VPC_ID, SMOKE_SUBNET_IDS, SMOKE_TASK_IMAGE, AWS_REGION.
smoke-aws: install
	$(BIN)/python scripts/smoke_aws.py $(SMOKE_ARGS)
