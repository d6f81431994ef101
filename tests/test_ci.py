"""CI cannot pass by skipping the browser tests: .ci/run checks pytest's summary with
.ci/browser-tests-ran, which fails when any browser test was skipped."""
import os
import subprocess

import pytest

from tests.conftest import ROOT

PASSED = "==== 312 passed, 1 skipped in 901.22s ====\n"
OTHER_SKIP = "SKIPPED [1] tests/test_ownership.py:223: listed in SKIPPED\n"


def browser_tests_ran(tmp_path, output):
    log = tmp_path / "pytest.log"
    log.write_text(output)
    return subprocess.run([str(ROOT / ".ci" / "browser-tests-ran"), str(log)], capture_output=True, text=True)


@pytest.mark.parametrize("skip_line", [
    "SKIPPED [7] tests/test_browser.py:20: Chromium is not installed (apt-get install chromium); "
    "the browser test is skipped\n",
    "SKIPPED [1] tests/browser.py:14: playwright is not installed (pip install playwright); "
    "the browser test is skipped\n",
    "SKIPPED [2] tests/test_browser_upload.py:31: some other reason\n",
])
def test_a_skipped_browser_test_fails_ci(tmp_path, skip_line):
    result = browser_tests_ran(tmp_path, "short test summary info\n" + OTHER_SKIP + skip_line + PASSED)
    assert result.returncode == 1
    assert "browser tests were skipped" in result.stdout


def test_a_run_without_browser_skips_passes(tmp_path):
    assert browser_tests_ran(tmp_path, "short test summary info\n" + OTHER_SKIP + PASSED).returncode == 0


def test_ci_checks_every_pass_and_fails_without_chromium():
    script = (ROOT / ".ci" / "run").read_text()
    assert script.count("run_suite\n") >= 2 and ".ci/browser-tests-ran" in script
    assert "the browser test will be skipped" not in script


def test_make_test_fast_leaves_out_worker_and_browser_tests():
    # Without the variables of a `make` this suite may run under (its PYTEST_ARGS would carry over).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTEST_ARGS")}
    commands = subprocess.run(["make", "-n", "test-fast"], cwd=ROOT, capture_output=True, text=True, check=True,
                              env=env).stdout
    assert '-m "not worker and not browser"' in commands
