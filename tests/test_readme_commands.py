"""The README's two commands do all their own set-up: CI runs exactly the test command, and that command installs
what the tests need beyond the venv (Chromium for the report's HTML test)."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    lines = (REPO / "README.md").read_text().splitlines()
    assert [line.strip() for line in lines[1:5] if line.strip()] == ["make demo", "make test"]
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == "make test"


def test_make_test_installs_chromium_before_running_the_tests():
    plan = subprocess.run(["make", "--dry-run", "--always-make", "test"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout
    assert "apt-get install -y -q chromium" in plan
    assert plan.index("apt-get install -y -q chromium") < plan.index("pytest")
