# The README's two commands, `make book` and `make test`, plus the teacher's `make student`.
# Each installs what is missing into .venv first (only Python 3.10+ and make are needed).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# d2l is installed without its dependencies: its metadata pins numpy==1.23.5, which cannot
# install on current Python. Its own imports are listed in requirements.txt.
D2L    := d2l==1.0.3

# Offline data (Multi30k) next to the checkout, as in CI; chapters download it otherwise.
QKV_DATA ?= $(wildcard $(abspath ../shared/data))
export QKV_DATA

# Builds and tests draw the static figures only (sliders need a live notebook).
export QKV_STATIC_FIGURES := 1

# The student book runs its chapters with this budget (CI uses smoke to save time).
STUDENT_BUDGET ?= book

.PHONY: book test student clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps $(D2L)
	touch $(STAMP)

## make book: build the HTML book in _build/html, executing every chapter with the book budget;
## any warning or execution error fails the build. The execution cache is keyed on the
## notebooks only, so it is cleared whenever the package changed since it was written.
CACHE_DB := _build/.jupyter_cache/global.db
book: $(STAMP)
	@if [ -f $(CACHE_DB) ] && [ -n "$$(find src -name '*.py' -newer $(CACHE_DB))" ]; then \
		echo "src/qkv changed since the last build: clearing the execution cache"; \
		rm -rf _build/.jupyter_cache _build/.doctrees; fi
	QKV_BUDGET=book $(VENV)/bin/jupyter-book build . --warningiserror --keep-going

## make test: unit, parity and property tests of qkv, then every chapter run by nbval with the
## smoke budget.
test: $(STAMP)
	QKV_BUDGET=smoke $(PY) -m pytest tests chapters --nbval-lax --nbval-current-env

## make student: the student edition (no solutions) in _build/student/_build/html, and its
## notebooks in _build/student/source/chapters.
student: $(STAMP)
	rm -rf _build/student
	$(PY) -m qkv.exercises.student . _build/student/source
	QKV_BUDGET=$(STUDENT_BUDGET) $(VENV)/bin/jupyter-book build _build/student/source \
		--path-output _build/student --warningiserror --keep-going

clean:
	rm -rf _build
