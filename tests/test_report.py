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
    assert [row["value"] for row in report.chapter_results(files)] == ["0.9951", "30 BLEU"]
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
