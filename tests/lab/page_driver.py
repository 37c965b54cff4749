"""Drives the live page in headless Debian Chromium (selenium + chromedriver), inside the lab
netns where the page's server listens. Run as a script: `page_driver.py URL TOKEN`; it logs
in through the form, then answers one JSON command per stdin line with one JSON line:

  {"cmd": "seen"}                       -> {"bridges": [...], "ports": [...], "containers": [...],
                                            "drift": {"port/P": "create", ...}}
  {"cmd": "wait_gone", "port": P, "timeout": S} -> {"gone": true|false}
  {"cmd": "wait_drift", "resource": "port/P", "drift": D|null, "timeout": S}
                                        -> {"drift": what the page shows (D when it came)}
  {"cmd": "shot", "path": F}            -> {"saved": F}
"""

from __future__ import annotations

import json
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def browser() -> webdriver.Chrome:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000"):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


SEEN = """
const seen = {drift: {}};
for (const kind of ["bridge", "port", "container"]) {
  const nodes = [...document.querySelectorAll(`[data-${kind}]`)];
  seen[kind + "s"] = nodes.map((n) => n.dataset[kind]).sort();
  for (const n of nodes)
    if (n.dataset.drift) seen.drift[`${kind}/${n.dataset[kind]}`] = n.dataset.drift;
}
return seen;
"""
"""Read in one script: the page may re-render between two WebDriver lookups."""


def seen(driver: webdriver.Chrome) -> dict:
    return driver.execute_script(SEEN)


def log_in(driver: webdriver.Chrome, url: str, token: str) -> None:
    deadline = time.monotonic() + 30
    while True:  # the server may still be starting: Chromium then shows its own error page
        try:
            driver.get(url + "/")
            if driver.find_elements(By.ID, "token"):
                break
        except WebDriverException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no login form at {url}: {driver.page_source[:300]}")
        time.sleep(0.3)
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "open").click()
    deadline = time.monotonic() + 30
    while not [e for e in driver.find_elements(By.ID, "state") if e.text == "live"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page never went live: {driver.page_source[:500]}")
        time.sleep(0.1)


def answer(driver: webdriver.Chrome, command: dict) -> dict:
    if command["cmd"] == "seen":
        return seen(driver)
    if command["cmd"] == "wait_gone":
        deadline = time.monotonic() + command["timeout"]
        while command["port"] in seen(driver)["ports"]:
            if time.monotonic() > deadline:
                return {"gone": False}
            time.sleep(0.2)
        return {"gone": True}
    if command["cmd"] == "wait_drift":
        deadline = time.monotonic() + command["timeout"]
        while (shown := seen(driver)["drift"].get(command["resource"])) != command["drift"]:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return {"drift": shown}
    if command["cmd"] == "shot":
        driver.save_screenshot(command["path"])
        return {"saved": command["path"]}
    raise ValueError(command)


def main() -> None:
    url, token = sys.argv[1:3]
    driver = browser()
    try:
        log_in(driver, url, token)
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            print(json.dumps(answer(driver, json.loads(line))), flush=True)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
