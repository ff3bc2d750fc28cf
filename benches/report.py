"""Splice the sections scripts/bench.sh measured into docs/benchmarks.md.

    python3 benches/report.py docs/benchmarks.md SECTIONS_DIR SCENARIO...

Each scenario's section sits between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`;
only the scenarios just run (and the machine line, prefixed to each) are replaced, so
a subset run leaves the others' figures, with their own dates, in place. A section not
yet in the file goes before the closing note. Text outside the markers is kept.
"""
import os
import re
import sys

ORDER = ["ckan", "pgbench", "rate", "update", "bytes", "latency", "delivery", "poll"]
CLOSING = "## Closing note"


def main():
    path, sections, scenarios = sys.argv[1], sys.argv[2], sys.argv[3:]
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n" + CLOSING + "\n"
    machine = open(os.path.join(sections, "machine.md")).read().strip()
    for name in sorted(scenarios, key=ORDER.index):
        body = open(os.path.join(sections, name + ".md")).read().strip()
        # The machine line goes under the section's heading.
        head, _, rest = body.partition("\n")
        block = "<!-- bench:%s -->\n%s\n\n%s\n%s\n<!-- /bench:%s -->" % (
            name, head, machine, rest, name)
        pattern = re.compile(r"<!-- bench:%s -->.*?<!-- /bench:%s -->" % (name, name), re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _: block, text)
        elif CLOSING in text:
            text = text.replace(CLOSING, block + "\n\n" + CLOSING, 1)
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
    open(path, "w").write(text)


if __name__ == "__main__":
    main()
