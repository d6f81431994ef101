"""`make test`: the whole suite, in two parts.

1. The tests that start no worker process and no browser, on every core at once (pytest-xdist,
   one module per process so that a module's shared fixtures are made once).
2. The worker and browser tests, one at a time: each waits for real processes within timed limits,
   and two at once would only slow each other past them.

Arguments go to both parts (a test file, -k, -x, --durations=...). A part with nothing to run is
fine when the arguments chose tests of the other part only; nothing collected at all is a broken
suite, never a pass. The last line adds up both parts (an error counts as a failure).
"""
import os
import re
import subprocess
import sys

PARTS = [
    ("tests without workers or a browser, in parallel",
     ["-m", "not worker and not browser", "-n", os.environ.get("TEST_PROCESSES", "auto"), "--dist", "loadscope"]),
    ("worker and browser tests, one at a time", ["-m", "worker or browser"]),
]
NO_TESTS_COLLECTED = 5
# pytest's closing line, e.g. "==== 3 failed, 1,190 passed, 3 skipped, 2 deselected in 612.10s ===="
COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)\b")


def run_part(title, options, arguments):
    print(f"\n== make test: {title}", flush=True)
    process = subprocess.Popen([sys.executable, "-m", "pytest", *options, *arguments],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    last_summary = ""
    for line in process.stdout:
        sys.stdout.write(line)
        if line.startswith("=") and (" in " in line) and COUNT.search(line):
            last_summary = line
    return process.wait(), last_summary


def main(arguments):
    totals, codes = {}, []
    for title, options in PARTS:
        code, summary = run_part(title, options, arguments)
        codes.append(code)
        for number, word in COUNT.findall(summary):
            word = "failed" if word.startswith("error") else word
            totals[word] = totals.get(word, 0) + int(number)
    if all(code == NO_TESTS_COLLECTED for code in codes):
        print("pytest collected no tests: the suite is broken.")
        return 1
    failing = [code for code in codes if code not in (0, NO_TESTS_COLLECTED)]
    skipped = f", {totals['skipped']} skipped" if totals.get("skipped") else ""
    print(f"Total: {totals.get('passed', 0)} passed, {totals.get('failed', 0)} failed{skipped}")
    return failing[0] if failing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
