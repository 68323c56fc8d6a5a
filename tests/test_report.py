"""qkv.report: the results page's rows come from the result files, with device and date."""

import json
import os

import pytest

from qkv import report


def _write(folder, name, data):
    (folder / name).write_text(json.dumps(data))


def test_rows_from_chapter_runs_and_benchmarks(tmp_path):
    _write(tmp_path, "chapters-cpu.json", {
        "device": "CPU x", "date": "2026-11-21", "threads": 2,
        "chapters": [{"chapter": "05_positional_encoding", "budget": "book", "wall_s": 123.456,
                      "results": [{"name": "accuracy, sinusoidal", "value": 0.99512, "unit": ""},
                                  {"name": "BLEU", "value": 30, "unit": "BLEU"}]},
                     {"chapter": "06_transformer", "budget": "book", "wall_s": 400.0,
                      "threads": 1, "date": "2026-11-22", "results": []}]})
    _write(tmp_path, "attention-cpu.json", {
        "benchmark": "attention", "device": "CPU y", "date": "2026-11-20",
        "summary": {"min_ratio_fast": 1.1109}})
    files = report.load_results(tmp_path)
    assert report.chapter_times(files) == [{
        "chapter": "05_positional_encoding", "budget": "book", "wall time (s)": 123.5,
        "device": "CPU x, 2 thread(s)", "date": "2026-11-21"}, {
        "chapter": "06_transformer", "budget": "book", "wall time (s)": 400.0,
        "device": "CPU x, 1 thread(s)", "date": "2026-11-22"}]  # a run's own threads and date
    assert [row["seed 0"] for row in report.chapter_results(files)] == ["0.9951", "30 BLEU"]
    assert report.chapter_results(files, ("smoke",)) == []
    assert report.benchmark_summaries(files) == [{
        "benchmark": "attention", "quantity": "min_ratio_fast", "value": "1.111",
        "device": "CPU y", "date": "2026-11-20"}]
    table = report.markdown_table(report.benchmark_summaries(files)).splitlines()
    assert table[0] == "| benchmark | quantity | value | device | date |"
    assert table[2] == "| attention | min_ratio_fast | 1.111 | CPU y | 2026-11-20 |"
    assert report.markdown_table([]) == "(nothing measured yet)"


def test_device_name_gives_the_cpu_and_its_cores():
    assert report.device_name("cpu").endswith(f", {os.cpu_count()} cores")


def test_a_result_without_device_or_date_is_rejected(tmp_path):
    _write(tmp_path, "x.json", {"device": "cpu"})
    with pytest.raises(ValueError, match="x.json has no 'date'"):
        report.load_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="no results folder"):
        report.load_results(tmp_path / "missing")


def test_committed_results_are_readable():
    files = report.load_results()
    assert files, "benchmarks/results/ holds at least one result"
    assert report.benchmark_summaries(files)


def test_results_swept_over_seeds_show_seed_0_and_the_spread(tmp_path):
    run = lambda seed, threads, bleu: {  # noqa: E731
        "chapter": "06_transformer", "budget": "book", "seed": seed, "threads": threads,
        "wall_s": 1.0, "claims": [], "errors": [],
        "results": [{"name": "BLEU", "value": bleu, "unit": "BLEU"}]}
    _write(tmp_path, "claims-cpu.json", {
        "device": "CPU z", "date": "2026-12-02",
        "runs": [run(0, 1, 33.0), run(0, 2, 33.5), run(1, 2, 31.25), run(2, 2, 34.0)]})
    _write(tmp_path, "chapters-cpu.json", {
        "device": "CPU x", "date": "2026-11-21", "threads": 2,
        "chapters": [{"chapter": "06_transformer", "budget": "book", "wall_s": 2.0,
                      "results": [{"name": "BLEU", "value": 30.0, "unit": "BLEU"}]},
                     {"chapter": "05_positional_encoding", "budget": "book", "wall_s": 2.0,
                      "results": [{"name": "accuracy", "value": 0.5, "unit": ""}]}]})
    rows = report.chapter_results(report.load_results(tmp_path), ("book",))
    assert rows == [
        {"chapter": "06_transformer", "budget": "book", "result": "BLEU", "seed 0": "33.5 BLEU",
         "spread over seeds (min–max)": "31.25–34 BLEU", "seeds; threads": "0, 1, 2; 1, 2",
         "device": "CPU z", "date": "2026-12-02"},
        {"chapter": "05_positional_encoding", "budget": "book", "result": "accuracy",
         "seed 0": "0.5", "spread over seeds (min–max)": "seed 0 only", "seeds; threads": "0; 2",
         "device": "CPU x", "date": "2026-11-21"}]  # the swept chapter's seed-0 row is not repeated


def test_claim_checks_count_every_claim_of_every_run(tmp_path):
    run = lambda seed, holds, errors: {  # noqa: E731
        "chapter": "07_riemannian_geometry", "budget": "book", "seed": seed, "threads": 1,
        "wall_s": 1.0, "results": [], "errors": errors,
        "claims": [{"claim": "MAP higher in the disk", "holds": True},
                   {"claim": "step size inside the grid", "holds": holds}]}
    _write(tmp_path, "claims-cpu.json", {"device": "CPU z", "date": "2026-12-02", "runs": [
        run(0, True, []), run(1, False, [{"cell": 12, "error": "AssertionError", "message": ""}])]})
    assert report.claim_checks(report.load_results(tmp_path)) == [{
        "chapter": "07_riemannian_geometry", "budget": "book", "seeds; threads": "0, 1; 1",
        "claims held": "3 of 4",
        "claims that failed": "step size inside the grid (seed 1, 1 thread(s))",
        "cells that raised": "cell 12: AssertionError (seed 1, 1 thread(s))",
        "device": "CPU z", "date": "2026-12-02"}]


def test_rows_grouped_by_device_name_it_once():
    rows = [{"x": 1, "device": "A", "date": "d1"}, {"x": 2, "device": "B", "date": "d1"},
            {"x": 3, "device": "A", "date": "d1"}]
    assert report.by_device(rows) == [("A, d1", [{"x": 1}, {"x": 3}]), ("B, d1", [{"x": 2}])]


def test_a_benchmark_is_named_on_its_first_row_only(tmp_path):
    _write(tmp_path, "estimate.json", {"benchmark": "estimate", "device": "CPU", "date": "d",
                                       "summary": {"a": 1.0, "b": 2.0, "c": 3.0}})
    rows = report.benchmark_summaries(report.load_results(tmp_path))
    assert [row["benchmark"] for row in rows] == ["estimate", "", ""]
    assert [row["quantity"] for row in rows] == ["a", "b", "c"]
