"""The GitHub workflows: valid against the workflow schema, and every step they run is a
Makefile target that .ci/run also runs (so what publishes the book is what CI checked)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")


def test_the_four_workflows_exist():
    assert {p.stem for p in WORKFLOWS} == {"pull-request", "publish", "release", "colab"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_is_valid_against_the_schema(path):
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert checker, "check-jsonschema is installed by requirements.txt"
    result = subprocess.run([checker, "--builtin-schema", "vendor.github-workflows", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("name: x\non: push\njobs:\n  a:\n    steps: {not: a list}\n")
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    result = subprocess.run([checker, "--builtin-schema", "vendor.github-workflows", str(broken)],
                            capture_output=True, text=True)
    assert result.returncode != 0


def _run_steps(path):
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [step["run"] for job in workflow["jobs"].values()
            for step in job.get("steps", []) if "run" in step]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_every_step_is_a_makefile_target_that_ci_runs(path):
    targets = set(re.findall(r"^([a-z][\w-]*):", MAKEFILE, re.MULTILINE))
    ci_targets = set(re.findall(r"^make ([\w-]+)", CI, re.MULTILINE))
    commands = _run_steps(path)
    assert commands, f"{path.name} runs nothing"
    for command in commands:
        match = re.fullmatch(r"make ([\w-]+)(?: [A-Z_]+=\S+)*", command.strip())
        assert match, f"{path.name}: step {command!r} is not a plain make target"
        assert match[1] in targets, f"{path.name}: no Makefile target {match[1]!r}"
        assert match[1] in ci_targets, f"{path.name}: .ci/run never runs make {match[1]}"
