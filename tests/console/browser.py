#!/usr/bin/env python3
"""Drives Dialtone's web console in a real browser (Debian's Chromium, headless, through
Playwright; no browser download). Run by tests/tests/console.rs in two phases around a real
sipp call:

    browser.py numbers   # log in (a wrong token first), create a number, edit its voice URL
    browser.py calls     # the call in the list, its timeline, its recording played, usage,
                         # the live events, a phone-sized screen, and the bad-input cases

Settings come from the environment: DIALTONE_URL, DIALTONE_AC, DIALTONE_TOKEN,
DIALTONE_NUMBER, DIALTONE_VOICE_URL, DIALTONE_SCREENSHOTS (a directory), CHROMIUM (default
/usr/bin/chromium). Exits non-zero with the failing check on any failure.
"""

import base64
import os
import re
import sys

from playwright.sync_api import expect, sync_playwright

URL = os.environ["DIALTONE_URL"]
AC = os.environ["DIALTONE_AC"]
TOKEN = os.environ["DIALTONE_TOKEN"]
NUMBER = os.environ["DIALTONE_NUMBER"]
SHOTS = os.environ["DIALTONE_SCREENSHOTS"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--autoplay-policy=no-user-gesture-required", "--mute-audio"]


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=True)


def log_in(page, token=TOKEN, sid=AC):
    page.goto(URL + "/console")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.get_by_label("Account SID").fill(sid)
    page.get_by_label("Auth token").fill(token)
    page.get_by_role("button", name="Log in").click()


def numbers(page, context):
    # Wrong credentials: the page says so, and no session cookie is set.
    log_in(page, token="not-the-token")
    expect(page.get_by_role("alert")).to_have_text("Wrong SID or secret.")
    assert not [c for c in context.cookies() if c["name"] == "dialtone_console"], context.cookies()
    shot(page, "login")
    log_in(page)
    expect(page).to_have_url(re.compile(r"/console/calls$"))
    cookie = [c for c in context.cookies() if c["name"] == "dialtone_console"][0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie

    page.get_by_role("link", name="Numbers").click()
    # The form fails with the REST API's code for a bad number.
    page.get_by_label("Phone number (E.164)").fill("call me")
    page.get_by_role("button", name="Add number").click()
    expect(page.get_by_role("alert")).to_contain_text("Error 21421")
    # Keyboard only: tab from the number field to the voice URL, type, submit with Enter.
    page.get_by_label("Phone number (E.164)").fill(NUMBER)
    page.get_by_label("Phone number (E.164)").press("Tab")
    page.keyboard.type("http://127.0.0.1:9/nowhere")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Added " + NUMBER)
    # Point it at the application.
    field = page.get_by_label("Voice URL of " + NUMBER)
    field.fill(os.environ["DIALTONE_VOICE_URL"])
    page.get_by_role("button", name="Save the voice URL of " + NUMBER).click()
    expect(page.get_by_role("status")).to_contain_text("Saved the voice URL")
    expect(page.get_by_label("Voice URL of " + NUMBER)).to_have_value(os.environ["DIALTONE_VOICE_URL"])
    shot(page, "numbers")

    # A form posted without the session's CSRF token is refused.
    refused = page.request.post(URL + "/console/numbers", form={"PhoneNumber": "+14155550999"})
    assert refused.status == 403, refused.status


def calls(page, context):
    log_in(page)
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(NUMBER)
    expect(rows.first).to_contain_text("completed")
    shot(page, "calls")
    # Filters: none of the calls is busy.
    page.get_by_label("Status").select_option("busy")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No calls.")).to_be_visible()
    page.get_by_label("Status").select_option("")
    page.get_by_role("button", name="Filter").click()

    # The call's page: facts, timeline, recording, charge.
    page.locator("table tbody tr a").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Call CA")
    timeline = page.get_by_role("list", name="Events, with their offset from the first")
    for text in ["call.initiated", "call.webhook.responded", "call.answered", "media.record",
                 "call.recording.completed", "call.completed"]:
        expect(timeline).to_contain_text(text)
    expect(page.locator("dl.facts")).to_contain_text("0.00850 USD")
    expect(page.get_by_text("No child legs.")).to_be_visible()
    audio = page.locator("audio")
    expect(audio).to_have_count(1)
    duration = page.evaluate("""async () => {
        const audio = document.querySelector('audio');
        audio.load();
        await new Promise((ok, fail) => {
            audio.addEventListener('loadedmetadata', ok, {once: true});
            audio.addEventListener('error', () => fail(new Error('the recording did not load')), {once: true});
        });
        await audio.play();
        await new Promise(ok => setTimeout(ok, 400));
        return {duration: audio.duration, time: audio.currentTime};
    }""")
    assert duration["duration"] > 1 and duration["time"] > 0, duration
    shot(page, "call")

    # Another account's (or no) call: the console's 404 page.
    response = page.goto(URL + "/console/calls/CA00000000000000000000000000000000")
    assert response.status == 404, response.status
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")

    # Usage: the chart's bar for today counts the call; the table and the CSV agree.
    page.goto(URL + "/console/usage")
    bars = page.locator("svg.chart rect.bar[data-count='1']")
    expect(bars).to_have_count(1)
    expect(page.locator("svg.chart")).to_have_attribute("role", "img")
    expect(page.locator("table")).to_contain_text("calls-inbound")
    link = page.get_by_role("link", name="Download the daily records (CSV)")
    csv = page.request.get(URL + link.get_attribute("href"))
    assert csv.status == 200 and csv.headers["content-type"].startswith("text/csv"), csv.headers
    assert ",calls,Voice Minutes," in csv.text(), csv.text()
    shot(page, "usage")

    # Live events: a number created through the REST API appears without a reload.
    page.goto(URL + "/console/events")
    expect(page.get_by_role("status")).to_contain_text("Connected")
    credentials = base64.b64encode((AC + ":" + TOKEN).encode()).decode()
    created = page.request.post(
        URL + "/2010-04-01/Accounts/" + AC + "/IncomingPhoneNumbers.json",
        form={"PhoneNumber": "+14155550188"},
        headers={"Authorization": "Basic " + credentials})
    assert created.status == 201, created.status
    expect(page.locator("#events li[data-type='dialtone.number.provisioned']")).to_have_count(1)
    shot(page, "events")

    # A phone-sized screen: nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(URL + "/console/calls")
    overflow = page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, overflow
    shot(page, "calls-phone")

    # Logging out ends the session.
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.goto(URL + "/console/calls")
    expect(page).to_have_url(re.compile(r"/console/login$"))

    # An API key logs in as its account.
    log_in(page, token=os.environ["DIALTONE_KEY_SECRET"], sid=os.environ["DIALTONE_KEY_SID"])
    expect(page).to_have_url(re.compile(r"/console/calls$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Calls")


def main(phase):
    os.makedirs(SHOTS, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            {"numbers": numbers, "calls": calls}[phase](page, context)
        except Exception:
            shot(page, "failure-" + phase)
            raise
        finally:
            browser.close()
    print("ok: " + phase)


if __name__ == "__main__":
    main(sys.argv[1])
