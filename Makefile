# The README's two commands: `make repro` (run the default study) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup repro test ui clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	# brisque-published reads only the brisque wheel's SVR files; its deps (libsvm C build, OpenCV) are not needed.
	$(PY) -m pip install -q --no-deps 'brisque==0.2.0'
	touch $@

setup: $(VENV)/.installed

# A fresh clone's `dvc repro` skips `report` (its outputs are committed), so nothing reached MLflow: the second line
# logs the results once when no finished run holds this dvc.lock (the report stage never logs one twice).
repro: setup
	dvc repro
	@$(PY) -m iqabench.mlflow_ui logged || dvc repro -s -f report
	iqabench report
	@$(PY) -c 'from iqabench.mlflow_ui import ui_link; print("MLflow: start the UI with `make ui`.", ui_link())'

# Two workers, one test file each (module fixtures stay whole); the slow end-to-end files start first
# (tests/conftest.py), so the pipeline copy runs beside the rest. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: setup
	pytest -n $(TEST_WORKERS) --dist loadfile

# One web worker, and no GenAI job runner (MLflow 3 starts one with 7 queue consumers, ~2 GB, idle here).
ui: setup
	@$(PY) -c 'from iqabench.mlflow_ui import ui_link; print(ui_link())'
	@echo "(or http://127.0.0.1:5000 -> Model training -> iqabench -> Views -> leaderboard)"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri sqlite:///mlflow.db --artifacts-destination ./mlartifacts --host 127.0.0.1 --port 5000 --workers 1

clean:
	rm -rf data/prepared data/corpus data/encoders data/models data/features data/eval data/checkpoints
