"""Drives the web console in headless Chromium, as people would use it.

Run by crates/cli/tests/console.rs against a `domicile serve` it started.
Environment: BASE (the REST listener's URL), AUDITOR, OPERATOR and ADMIN
(REST tokens), POLICY (a config file to plan, then apply), SHOTS (a folder
for the screenshots), RATE (bytes per second of the migration). Prints one
line per step, `ok STEP: details`; any failed check raises, so the script
exits non-zero with the reason.
"""

import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BASE = os.environ["BASE"]
AUDITOR = os.environ["AUDITOR"]
OPERATOR = os.environ["OPERATOR"]
ADMIN = os.environ["ADMIN"]
POLICY = os.environ["POLICY"]
SHOTS = os.environ["SHOTS"]
RATE = int(os.environ.get("RATE", "0"))


def step(name, details=""):
    print(f"ok {name}: {details}", flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--disable-dev-shm-usage", "--window-size=1280,1600"):
        opts.add_argument(a)
    # Report what the browser refused (a CSP violation is logged there).
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    d = webdriver.Chrome(service=service, options=opts)
    d.set_page_load_timeout(120)
    return d


def shot(d, name):
    path = os.path.join(SHOTS, name + ".png")
    # The whole page: the window as tall as the document.
    height = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(1280, max(800, min(int(height) + 40, 6000)))
    d.save_screenshot(path)
    d.set_window_size(1280, 1600)
    return path


def rest(method, path, body=None, content_type="application/json"):
    data = None
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + ADMIN)
    if data is not None:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, json.loads(r.read() or b"null")


def csp_violations(d):
    return [e["message"] for e in d.get_log("browser")
            if "Content Security Policy" in e["message"] or "Refused to" in e["message"]]


def login(d, token):
    d.get(BASE + "/ui/")
    WebDriverWait(d, 30).until(EC.presence_of_element_located((By.NAME, "token")))
    check(d.current_url.endswith("/ui/login"), f"not sent to the login page: {d.current_url}")
    box = d.find_element(By.CSS_SELECTOR, 'input[name="token"]')
    box.clear()
    box.send_keys(token)
    d.find_element(By.CSS_SELECTOR, "form.login button").click()


def nav(d):
    return [a.text for a in d.find_elements(By.CSS_SELECTOR, "header.bar nav a")]


def has(d, css):
    return len(d.find_elements(By.CSS_SELECTOR, css)) > 0


def main():
    d = browser()
    try:
        # A wrong token is refused, on the login page.
        login(d, "not-a-token")
        err = WebDriverWait(d, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, "p.error")))
        check("not valid" in err.text, f"no refusal shown: {err.text!r}")
        check(not has(d, "header.bar nav"), "a refused login shows the pages")
        check(d.get_cookie("domicile_session") is None, "a refused login got a session cookie")
        shot(d, "01-login-refused")
        step("wrong token refused")

        # The auditor logs in and lands on the overview.
        login(d, AUDITOR)
        WebDriverWait(d, 30).until(EC.url_contains("/ui/overview"))
        cookie = d.get_cookie("domicile_session")
        check(cookie is not None, "no session cookie")
        check(cookie["httpOnly"] and cookie.get("sameSite") == "Strict",
              f"cookie flags: {cookie}")
        check(AUDITOR not in cookie["value"], "the token is in the cookie")
        check(d.execute_script("return document.cookie") == "",
              "the session cookie is readable by scripts")
        pages = nav(d)
        check("Subject" not in pages, f"the auditor is offered subject lookup: {pages}")
        check("Ledger" in pages and "Migration" in pages and "Plan" in pages, f"pages: {pages}")
        flows = d.find_elements(By.CSS_SELECTOR, "svg.chart.flow")
        check(len(flows) >= 1, "no flow diagram")
        bands = d.find_elements(By.CSS_SELECTOR, "svg.chart.flow path")
        check(len(bands) >= 2, f"the flow diagram has {len(bands)} bands")
        labels = " ".join(t.text for t in d.find_elements(By.CSS_SELECTOR, "svg.chart.flow text"))
        check("cn-north" in labels and "IN" in labels, f"flow labels: {labels!r}")
        check(has(d, "table.per-region") and has(d, "table.per-home"), "no counts per region and home")
        check(has(d, "section#violations"), "no violations section")
        shot(d, "02-overview-auditor")
        step("overview", f"{len(flows)} flow diagrams, {len(bands)} bands; pages {pages}")

        # Exposure: the heat maps with their grounds.
        d.find_element(By.LINK_TEXT, "Exposure").click()
        WebDriverWait(d, 30).until(EC.url_contains("/ui/exposure"))
        heat = d.find_elements(By.CSS_SELECTOR, "svg.chart.heat")
        check(len(heat) == 2, f"{len(heat)} heat maps")
        cells = d.find_elements(By.CSS_SELECTOR, "svg.chart.heat.plaintext rect")
        check(len(cells) >= 1, "the plaintext heat map has no cells")
        grounds = [r.find_elements(By.TAG_NAME, "td")[-1].text
                   for r in d.find_elements(By.CSS_SELECTOR, "table.exposure tbody tr")]
        check(any(g.strip() for g in grounds), f"no grounds in the exposure table: {grounds}")
        shot(d, "03-exposure")
        step("exposure", f"{len(heat)} heat maps, {len(cells)} cells, grounds {sorted(set(grounds))}")

        # A what-if plan of the next policy, loaded from a file.
        _, active = rest("GET", "/v1/policy")
        version = active["version"]
        d.find_element(By.LINK_TEXT, "Plan").click()
        WebDriverWait(d, 30).until(EC.presence_of_element_located((By.ID, "policy-file")))
        d.find_element(By.ID, "policy-file").send_keys(POLICY)
        WebDriverWait(d, 30).until(
            lambda d: "[[rule]]" in d.find_element(By.ID, "policy").get_property("value"))
        d.find_element(By.ID, "plan-button").click()
        WebDriverWait(d, 60).until(EC.presence_of_element_located((By.ID, "what-if")))
        summary = d.find_element(By.CSS_SELECTOR, "dl.plan-summary").text
        check("units" in summary and "egress cost" in summary and "monthly cost after" in summary,
              f"plan summary: {summary!r}")
        check(has(d, "table.diff tbody tr"), "no policy diff")
        moves = d.find_elements(By.CSS_SELECTOR, "table.moves tbody tr")
        check(len(moves) >= 3, f"{len(moves)} moves listed")
        first = [td.text for td in moves[0].find_elements(By.TAG_NAME, "td")]
        check(first[0] not in ("ravi", "priya") and not first[0].startswith("in-"),
              f"the auditor sees a subject id: {first}")
        check(len(d.find_elements(By.CSS_SELECTOR, "svg.chart.heat")) == 4, "no exposure before and after")
        check(len(d.find_elements(By.CSS_SELECTOR, "svg.chart.flow")) == 4, "no flows before and after")
        shot(d, "04-plan")
        status, active = rest("GET", "/v1/policy")
        check(active["version"] == version, f"the plan applied something: {active}")
        step("plan", f"{len(moves)} moves; policy still version {active['version']}; {summary!r}")

        # The admin applies the policy and starts the migration, slowly;
        # the auditor watches it to the end.
        with open(POLICY) as f:
            text = f.read()
        status, applied = rest("POST", "/v1/policy?migrate=false", text, "text/plain")
        check(status == 201 and applied["version"] == version + 1, f"apply: {status} {applied}")
        status, started = rest("POST", "/v1/migrations", {"rate": RATE, "workers": 1, "batch": 1})
        check(status == 202, f"start: {status} {started}")
        d.find_element(By.LINK_TEXT, "Migration").click()
        WebDriverWait(d, 30).until(EC.presence_of_element_located((By.ID, "m-state")))
        check(not has(d, "#pause-button") and not has(d, "#resume-button")
              and not has(d, "#cancel-button"), "the auditor sees migration controls")
        seen, percents, mid = [], [], False
        deadline = time.time() + 180
        while time.time() < deadline:
            state = d.find_element(By.ID, "m-state").text
            pct = int(d.find_element(By.ID, "m-percent").text.rstrip("%") or 0)
            if not seen or seen[-1] != state:
                seen.append(state)
            if not percents or percents[-1] != pct:
                percents.append(pct)
            if not mid and state == "running" and 0 < pct < 100:
                shot(d, "05-migration-running")
                mid = True
            if state == "done":
                break
            time.sleep(0.2)
        check(seen and seen[-1] == "done", f"the migration never showed done: {seen}")
        check(percents[-1] == 100, f"progress: {percents}")
        check(any(0 < p < 100 for p in percents), f"no progress seen between start and end: {percents}")
        check(percents == sorted(percents), f"progress went back: {percents}")
        rate = d.find_element(By.ID, "m-rate").text
        check(rate.endswith("/s"), f"rate {rate!r}")
        check(not has(d, "#pause-button"), "the auditor sees the pause button")
        shot(d, "06-migration-done")
        step("migration", f"states {seen}, progress {percents}, rate {rate}")

        # The ledger verifies.
        d.find_element(By.LINK_TEXT, "Ledger").click()
        verdict = WebDriverWait(d, 60).until(
            EC.presence_of_element_located((By.CSS_SELECTOR, "p.verdict"))).text
        check("verifies" in verdict, f"ledger: {verdict!r}")
        shot(d, "07-ledger")
        step("ledger", verdict)

        # The auditor may not reach subject lookup by its address either.
        d.get(BASE + "/ui/subject")
        check("may not see" in d.find_element(By.CSS_SELECTOR, "p.error").text, "subject page shown")
        step("subject refused to the auditor")

        bad = csp_violations(d)
        check(not bad, f"the browser refused content: {bad}")

        # Logout ends the session.
        d.get(BASE + "/ui/overview")
        d.find_element(By.CSS_SELECTOR, "header.bar form.logout button").click()
        WebDriverWait(d, 30).until(EC.url_contains("/ui/login"))
        d.get(BASE + "/ui/overview")
        check(d.current_url.endswith("/ui/login"), f"still logged in: {d.current_url}")
        step("logout")

        # The operator sees the controls and looks a subject up.
        login(d, OPERATOR)
        WebDriverWait(d, 30).until(EC.url_contains("/ui/overview"))
        check("Subject" in nav(d), f"operator pages: {nav(d)}")
        check(len(d.find_elements(By.CSS_SELECTOR, "svg.chart.flow path")) > len(bands),
              "the overview does not show the data moved")
        shot(d, "10-overview-after-migration")
        # The first screen alone (docs/console.png is one of these).
        d.set_window_size(1280, 1040)
        d.save_screenshot(os.path.join(SHOTS, "11-overview-first-screen.png"))
        d.set_window_size(1280, 1600)
        d.find_element(By.LINK_TEXT, "Migration").click()
        WebDriverWait(d, 30).until(EC.presence_of_element_located((By.ID, "m-state")))
        check(has(d, "#pause-button") and has(d, "#resume-button") and has(d, "#cancel-button"),
              "the operator has no migration controls")
        shot(d, "08-migration-operator")
        d.find_element(By.LINK_TEXT, "Subject").click()
        box = WebDriverWait(d, 30).until(EC.presence_of_element_located((By.ID, "subject-id")))
        box.send_keys("ravi")
        d.find_element(By.CSS_SELECTOR, "form.lookup button").click()
        WebDriverWait(d, 30).until(EC.presence_of_element_located((By.ID, "copies")))
        copies = [[td.text for td in r.find_elements(By.TAG_NAME, "td")]
                  for r in d.find_elements(By.CSS_SELECTOR, "table.copies tbody tr")]
        check(len(copies) == 2 and not any("cn-north" in c[1] for c in copies)
              and any("in-mumbai" in c[1] for c in copies), f"copies: {copies}")
        check(has(d, "table.compel tbody tr"), "no authorities")
        history = d.find_elements(By.CSS_SELECTOR, "table.history tbody tr")
        check(len(history) >= 2, f"{len(history)} ledger entries")
        check("ravi" not in d.current_url, "the subject id is in the address")
        shot(d, "09-subject-operator")
        step("operator", f"controls shown; ravi: {copies}; {len(history)} ledger entries")

        bad = csp_violations(d)
        check(not bad, f"the browser refused content: {bad}")
    except Exception:
        # What the browser showed when a step failed.
        print(f"at {d.current_url}:\n{d.find_element(By.TAG_NAME, 'body').text[:3000]}", flush=True)
        d.save_screenshot(os.path.join(SHOTS, "failure.png"))
        raise
    finally:
        d.quit()


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", flush=True)
        sys.exit(1)
