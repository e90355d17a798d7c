#!/usr/bin/env python3
"""Drives headless Chromium through the coordinator's live page (GET /).

Run by tests/integration/livepage_test.cc against a real coordinator and
worker with a job running; it can also be run by hand against any fleet:

  tests/integration/livepage_browser.py --url http://127.0.0.1:PORT/ \
      --job JOB --job-name NAME --owner-token T --other-token T2 \
      --viewer-token T3 --custodian-token T4 --dataset NAME \
      --screenshot build/artifacts/livepage.png

It speaks the W3C WebDriver protocol (plain JSON over HTTP) to Debian's
chromedriver with the standard library only, so the test needs no Python
package beyond the interpreter. Every wait is on a DOM condition with a
deadline; nothing sleeps to hide a race. Exit status 0: every check held;
1: a check failed (the message says which); 2: the browser could not be
started.
"""

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


class CheckFailed(Exception):
    pass


class WebDriver:
    """The few WebDriver commands the checks need."""

    def __init__(self, chromedriver, chromium, work_dir):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = "http://127.0.0.1:%d" % port
        self.log = open(os.path.join(work_dir, "chromedriver.log"), "w")
        self.proc = subprocess.Popen([chromedriver, "--port=%d" % port], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self._call("GET", "/status").get("ready"):
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromedriver did not start (see %s)" % self.log.name)
            time.sleep(0.05)  # polling a process that is starting, not a test condition
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1200", "--no-first-run", "--no-default-browser-check",
                "--user-data-dir=" + os.path.join(work_dir, "profile")]
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read() or b"{}").get("value")
        except urllib.error.HTTPError as e:
            raise RuntimeError("WebDriver %s %s: %s" % (method, path, e.read().decode(errors="replace")))

    def cmd(self, method, path, body=None):
        return self._call(method, "/session/%s%s" % (self.session, path), body)

    def get(self, url):
        self.cmd("POST", "/url", {"url": url})

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self, path):
        png = base64.b64decode(self.cmd("GET", "/screenshot"))
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(png)

    def browser_log(self):
        try:
            return self.cmd("POST", "/se/log", {"type": "browser"}) or []
        except RuntimeError:
            return []

    def quit(self):
        try:
            self.cmd("DELETE", "")
        except Exception:  # the browser may be gone already; chromedriver is ended below
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# What the page shows, read in one script so that one poll's DOM is seen
# whole: rows of each table by their data attributes, the curves' points.
SNAPSHOT = r"""
const rows = (id, attr) => Array.from(document.querySelectorAll('#' + id + ' tbody tr')).map((tr) => {
  const o = {key: tr.getAttribute(attr)};
  for (const td of tr.cells) o[td.className.split(' ')[0]] = td.textContent;
  return o;
});
const curves = {};
for (const card of document.querySelectorAll('#curves .job-curves')) {
  const c = {title: card.querySelector('h3').textContent};
  for (const svg of card.querySelectorAll('svg.chart')) {
    const kind = svg.getAttribute('class').split(' ')[1];
    c[kind] = Array.from(svg.querySelectorAll('circle')).map((p) => Number(p.getAttribute('data-epoch')));
  }
  curves[card.getAttribute('data-job-id')] = c;
}
const err = document.getElementById('error');
return {
  ready: document.body.getAttribute('data-ready') === '1',
  updated: document.body.getAttribute('data-updated'),
  error: err.hidden ? null : err.textContent,
  jobs: rows('jobs', 'data-job-id'),
  datasets: rows('datasets', 'data-dataset'),
  budgets: rows('budgets', 'data-file'),
  workers: rows('workers', 'data-worker-id'),
  workersNote: document.getElementById('workers-note').textContent,
  datasetsNote: document.getElementById('datasets-note').textContent,
  curves: curves,
  curvesText: document.getElementById('curves').textContent,
  images: document.querySelectorAll('img, iframe, object, embed').length,
  pwned: window.__livepage_pwned === true,
  cspViolations: Number(document.body.getAttribute('data-csp-violations') || 0),
};
"""

SET_TOKEN = r"""
document.getElementById('token').value = arguments[0];
document.getElementById('apply').click();
"""


def wait_for(driver, what, predicate, timeout):
    """The first snapshot for which predicate(snapshot) holds, before the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = driver.js(SNAPSHOT)
        if predicate(last):
            return last
        time.sleep(0.1)  # the next look at the DOM; the deadline decides, not this
    raise CheckFailed("timed out after %ss waiting for %s; the page showed:\n%s" %
                      (timeout, what, json.dumps(last, indent=1, ensure_ascii=False)))


def check(condition, message, snapshot=None):
    if not condition:
        extra = "" if snapshot is None else "\n" + json.dumps(snapshot, indent=1, ensure_ascii=False)
        raise CheckFailed(message + extra)


def epochs_of(row):
    return int(row["epochs"].split("/")[0])


def job_row(snap, job):
    for r in snap["jobs"]:
        if r["key"] == job:
            return r
    return None


def run(args, driver):
    url = args.url + ("&" if "?" in args.url else "?") + "poll=%d" % args.poll_ms
    driver.get(url)
    wait_for(driver, "the page's script to run (CSP allows it)", lambda s: s["ready"], 20)

    # A wrong token: an error, and no data at all.
    driver.js(SET_TOKEN, "dpf_" + "0" * 64)
    snap = wait_for(driver, "the error for a wrong token", lambda s: s["error"], 20)
    check("401" in snap["error"], "the error names the refusal", snap)
    check(not snap["jobs"] and not snap["datasets"] and not snap["budgets"] and not snap["workers"]
          and not snap["curves"], "a wrong token shows no data", snap)
    check(snap["updated"] is None, "a refused token is not shown as an update", snap)

    # The job's owner: the running job's epochs as they arrive, the curves
    # growing with them, the job's name shown as text and never as markup.
    driver.js(SET_TOKEN, args.owner_token)

    def running_with_epochs(s):
        r = job_row(s, args.job)
        return r is not None and r["state"] == "RUNNING" and epochs_of(r) >= 1 and not s["error"]
    first = wait_for(driver, "the owner to see the job RUNNING with an epoch", running_with_epochs, args.timeout)
    first_epochs = epochs_of(job_row(first, args.job))
    later = wait_for(driver, "a later epoch of the running job to arrive on the page",
                     lambda s: running_with_epochs(s) and epochs_of(job_row(s, args.job)) > first_epochs,
                     args.timeout)
    row = job_row(later, args.job)
    shown = epochs_of(row)
    check(row["name"] == args.job_name, "the job's name is shown exactly as submitted (%r)" % args.job_name, later)
    check(later["images"] == 0 and not later["pwned"], "no markup from the job's name reached the DOM", later)
    check(row["epsilon"] not in ("", "—") and float(row["epsilon"]) > 0, "the running job's ε is shown", later)
    curves = later["curves"].get(args.job)
    check(curves is not None, "the running job has curves", later)
    for kind in ("loss", "accuracy", "epsilon"):
        check(curves.get(kind) == list(range(1, shown + 1)),
              "the %s curve has one point per epoch shown (1..%d)" % (kind, shown), later)
    check([r["key"] for r in later["jobs"]] == [args.job], "the owner sees only their own job", later)
    check(not later["workers"] and "Not visible" in later["workersNote"], "an analyst sees no workers", later)
    check([d["key"] for d in later["datasets"]] == [args.dataset], "the owner sees the registered dataset", later)
    print("owner saw epochs %d then %d of %s arrive" % (first_epochs, shown, args.job))

    # Another analyst: the job is not there (as if it did not exist).
    driver.js(SET_TOKEN, args.other_token)
    snap = wait_for(driver, "the other analyst's view", lambda s: s["updated"] and not s["error"], 20)
    check(not snap["jobs"] and not snap["curves"], "another analyst sees none of the owner's jobs", snap)

    # A viewer: states and ε, no curves, no datasets, no workers.
    driver.js(SET_TOKEN, args.viewer_token)
    snap = wait_for(driver, "the viewer's view", lambda s: s["updated"] and job_row(s, args.job) is not None, 20)
    r = job_row(snap, args.job)
    check(r["state"] in ("RUNNING", "CANCELLED", "SUCCEEDED") and r["epsilon"] not in ("", "—"),
          "a viewer sees the state and ε", snap)
    check(r["owner"] == "", "a viewer does not see the owner", snap)
    check(not snap["curves"] and "not shown to this role" in snap["curvesText"], "a viewer sees no curves", snap)
    check(not snap["datasets"] and "Not visible" in snap["datasetsNote"], "a viewer sees no dataset details", snap)
    check(not snap["workers"], "a viewer sees no workers", snap)

    # The custodian: everything, the worker running the job included.
    driver.js(SET_TOKEN, args.custodian_token)

    def custodian_view(s):
        r = job_row(s, args.job)
        return (r is not None and r["state"] == "RUNNING" and s["workers"] and s["budgets"]
                and s["curves"].get(args.job))
    snap = wait_for(driver, "the custodian's view", custodian_view, args.timeout)
    check(any(w["job"] == args.job and w["state"] == "BUSY" for w in snap["workers"]),
          "the custodian sees the worker running the job", snap)
    check(any(args.dataset in b["names"] and float(b["spent"]) > 0 for b in snap["budgets"]),
          "the custodian sees the dataset's spent budget", snap)
    driver.screenshot(args.screenshot)
    print("screenshot: %s" % args.screenshot)

    check(snap["cspViolations"] == 0, "the page breaks none of its own Content-Security-Policy", snap)
    problems = [e for e in driver.browser_log() if e.get("level") == "SEVERE"
                and "Content Security Policy" in e.get("message", "")]
    check(not problems, "the page breaks none of its own Content-Security-Policy: %s" % problems)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--job", required=True)
    p.add_argument("--job-name", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--owner-token", required=True)
    p.add_argument("--other-token", required=True)
    p.add_argument("--viewer-token", required=True)
    p.add_argument("--custodian-token", required=True)
    p.add_argument("--screenshot", required=True)
    p.add_argument("--poll-ms", type=int, default=300)
    p.add_argument("--timeout", type=float, default=90)
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    p.add_argument("--chromedriver", default=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="livepage-")
    try:
        driver = WebDriver(args.chromedriver, args.chromium, work)
    except Exception as e:
        print("livepage: cannot start the browser: %s" % e, file=sys.stderr)
        return 2
    try:
        run(args, driver)
    except CheckFailed as e:
        print("livepage: FAILED: %s" % e, file=sys.stderr)
        try:
            driver.screenshot(os.path.splitext(args.screenshot)[0] + "-failed.png")
        except Exception:
            pass
        return 1
    finally:
        driver.quit()
        shutil.rmtree(work, ignore_errors=True)
    print("livepage: all checks held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
