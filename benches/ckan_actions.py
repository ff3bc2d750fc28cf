"""Real CKAN 2.12 actions per second, in-process, with and without capture.

    <venv>/bin/python benches/ckan_actions.py --database-url URL --binary ckan-webhooks \
        --work DIR [--iterations 60] [--rounds 4]

URL is an existing, empty database. CKAN is loaded as tests/ckan/driver.py loads it
(no Solr, no Redis) on a database made by tests/ckan/make_ini.py; `ckan-webhooks run`
runs beside it the whole time. Each round times, for capture off and on (alternating
which goes first), ITERATIONS loops of package_patch (notes), resource_create and
resource_update (url, description) by one ckanapi.LocalCKAN client, on a dataset made
for that round (so every variant sees datasets of the same size), each action ending
with Session.remove() as CKAN does per web request. Capture is switched with
`ckan-webhooks install` / `uninstall`. Prints BENCH lines and a `## notes` paragraph.
"""
import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "ckan"))
import driver  # noqa: E402
import nosolr  # noqa: E402


def make_ini(url, work):
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "tests/ckan/make_ini.py"),
         "--database-url", url, "--dir", work],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["ini"]


class Bench:
    def __init__(self, drv, binary, url):
        self.drv, self.binary, self.url = drv, binary, url

    def call(self, name, data, user="lab_editor"):
        with self.drv.app.test_request_context():
            try:
                return self.drv.action(name, user, data)
            finally:
                self.drv.model.Session.remove()

    def capture(self, on):
        cmd = "install" if on else "uninstall"
        subprocess.run([self.binary, cmd, "--database-url", self.url], check=True,
                       capture_output=True)

    def dataset(self, tag):
        pkg = self.call("package_create", {
            "name": "bench-%s" % tag, "title": "Bench %s" % tag, "owner_org": "lab-org",
            "notes": "Notes " * 40, "tags": [{"name": "bench"}, {"name": "ckan"}],
            "extras": [{"key": "source", "value": "benchmark"}],
            "resources": [{"url": "https://example.invalid/%s/%d.csv" % (tag, i),
                           "name": "file %d" % i, "format": "CSV"} for i in range(2)],
        })
        return pkg["id"]

    def loop(self, pkg, iterations, tag):
        start = time.perf_counter()
        for i in range(iterations):
            self.call("package_patch", {"id": pkg, "notes": "Notes %s %d " % (tag, i) * 20})
            res = self.call("resource_create", {
                "package_id": pkg, "url": "https://example.invalid/%s/new-%d.csv" % (tag, i),
                "name": "new %d" % i, "format": "CSV"})
            self.call("resource_update", {
                "id": res["id"], "url": "https://example.invalid/%s/upd-%d.csv" % (tag, i),
                "description": "updated %d" % i})
        return 3 * iterations / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)

    ini = make_ini(args.database_url, args.work)
    # The driver's protocol stream is binary (it serves Python 2.7 too): write text to it.
    import io
    out = io.TextIOWrapper(driver.protocol_stdout(), encoding="utf-8", write_through=True)
    nosolr.disable_solr()
    drv = driver.Driver(driver.load_ckan(ini))
    with drv.app.test_request_context():
        drv.setup()
        drv.model.Session.remove()
    bench = Bench(drv, args.binary, args.database_url)

    # The side schema exists throughout, so the service can run; capture starts off.
    bench.capture(True)
    bench.capture(False)
    service = subprocess.Popen(
        [args.binary, "run", "--database-url", args.database_url, "--listen", "127.0.0.1:0",
         "--site-url", "http://ckan.bench", "--token-secret", "bench"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(args.work, "service.log"), "w"))
    try:
        bench.loop(bench.dataset("warmup"), max(3, args.iterations // 5), "warmup")
        rates = {False: [], True: []}
        for r in range(args.rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            for on in order:
                bench.capture(on)
                tag = "r%d-%s" % (r, "on" if on else "off")
                rate = bench.loop(bench.dataset(tag), args.iterations, tag)
                rates[on].append(rate)
                print("round %d capture %s: %.2f actions/s" % (r, on, rate), file=sys.stderr)
    finally:
        service.terminate()
        service.wait(timeout=30)
        bench.capture(False)

    off = sum(rates[False]) / len(rates[False])
    on = sum(rates[True]) / len(rates[True])
    ratio = on / off
    runs = lambda xs: "/".join("%.1f" % x for x in xs)  # noqa: E731
    out.write("BENCH real CKAN 2.12 actions/s, one LocalCKAN client, capture on (%d rounds of "
              "%d × 3 actions; rounds %s) | %.1f actions/s | %.1f actions/s without capture "
              "(rounds %s) | %.3f (≥ 0.97): %s |\n" % (
                  args.rounds, args.iterations, runs(rates[True]), on, off, runs(rates[False]),
                  ratio, "met" if ratio >= 0.97 else "**missed**"))
    out.write("## notes\n")
    out.write("CKAN 2.12 loaded in-process as tests/ckan/driver.py loads it (Solr indexing "
              "patched to a no-op, which changes none of CKAN's SQL), on an empty database "
              "initialised by `ckan db init`. Each round makes a fresh dataset (2 resources, "
              "tags, an extra) and times package_patch (notes), resource_create and "
              "resource_update (url, description) in a loop, as `lab_editor`; capture off and "
              "on alternate within every round. `ckan-webhooks run` runs throughout (no "
              "subscriptions). Figures are means over rounds.\n")
    out.flush()


if __name__ == "__main__":
    main()
