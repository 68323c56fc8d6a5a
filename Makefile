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

.PHONY: book test student clean chromium pdf site student-branch release checkpoint colab-check

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

## make chromium: Debian's Chromium, which prints the PDF and runs the browser checks.
chromium:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium >/dev/null; }

## make pdf: the book as one PDF, _build/pdf/queries-keys-values.pdf, its pages printed by
## headless Chromium from the HTML book (after make book), then checked: it opens, and its
## outline has one section per chapter, in order.
PDF := _build/pdf/queries-keys-values.pdf
pdf: $(STAMP) chromium
	$(PY) scripts/make_pdf.py _build/html $(PDF)

## make site: the published site in _build/site, the book at / and the student edition at
## /student/ (after make book and make student).
site:
	test -f _build/html/index.html && test -f _build/student/_build/html/index.html
	rm -rf _build/site
	cp -r _build/html _build/site
	cp -r _build/student/_build/html _build/site/student
	touch _build/site/.nojekyll

## make student-branch: what the student-edition branch holds, in _build/student-branch: the
## student notebooks, which the student book's launch buttons open (after make student).
student-branch:
	test -d _build/student/source/chapters
	rm -rf _build/student-branch
	mkdir -p _build/student-branch
	cp -r _build/student/source/chapters _build/student-branch/chapters
	cp LICENSE LICENSE-CONTENT.md _build/student-branch/
	printf '%s\n' '# Queries, Keys and Values: student notebooks' '' \
		'The chapters without solutions, generated from main by `make student`; do not edit here.' \
		> _build/student-branch/README.md

## make release: the files of a release in _build/release: the HTML book (tar.gz), the PDF,
## and the executed notebooks (zip), after make book.
release: pdf
	test -d _build/jupyter_execute/chapters
	rm -rf _build/release
	mkdir -p _build/release
	tar -czf _build/release/queries-keys-values-html.tar.gz -C _build html
	cp $(PDF) _build/release/
	cd _build/jupyter_execute && $(abspath $(PY)) -m zipfile -c \
		$(abspath _build/release)/queries-keys-values-notebooks.zip chapters/*.ipynb

## make checkpoint: chapter 6's translation model trained at CHECKPOINT_BUDGET and packed into
## _build/release/ with its SHA-256 (sha256sum format), so a release carries the model that a
## learner can load instead of training (CI packs the smoke budget). Run it after make release.
CHECKPOINT_BUDGET ?= book
checkpoint: $(STAMP)
	rm -rf _build/checkpoint
	mkdir -p _build/release
	$(PY) -m qkv.translation train --budget $(CHECKPOINT_BUDGET) --out _build/checkpoint --quiet
	cd _build/release && $(abspath $(PY)) -m qkv.translation pack --model ../checkpoint \
		--out translator-$(CHECKPOINT_BUDGET).tar.gz > translator-$(CHECKPOINT_BUDGET).tar.gz.sha256
	cd _build/release && sha256sum --check translator-$(CHECKPOINT_BUDGET).tar.gz.sha256

## make colab-check: the chapters run as on Colab (scripts/colab_like.sh): in a fresh virtual
## environment holding only what Colab ships, or with COLAB_VENV=system in the current Python
## as it is (the weekly run inside Colab's runtime image).
COLAB_VENV ?= /tmp/qkv-colab
COLAB_BUDGET ?= smoke
COLAB_CHAPTERS ?=
colab-check:
	COLAB_BASE_PYTHON=$(COLAB_BASE_PYTHON) COLAB_PYTHON=$(COLAB_PYTHON) \
		bash scripts/colab_like.sh $(COLAB_VENV) $(COLAB_BUDGET) "$(COLAB_CHAPTERS)"

clean:
	rm -rf _build
