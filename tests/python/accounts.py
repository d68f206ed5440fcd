"""Twilio's own helper library (twilio-python) against Dialtone, only the base URL changed:
the account, subaccounts, API keys and account status, as a developer would use them.

Settings from the environment: DIALTONE_URL, DIALTONE_AC, DIALTONE_TOKEN. Exits non-zero
(an assertion or a TwilioRestException) on the first difference.
"""
import os

import json

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

URL = os.environ["DIALTONE_URL"]
AC = os.environ["DIALTONE_AC"]
TOKEN = os.environ["DIALTONE_TOKEN"]


def client(username, password, account_sid=None):
    c = Client(username, password, account_sid=account_sid)
    c.api.base_url = URL
    return c


def refused(call, status, code=None):
    """`call` fails with HTTP `status` (and Twilio error `code`). Fetches and creates raise
    TwilioRestException; a list's page raises TwilioException holding the response."""
    try:
        call()
    except TwilioRestException as e:
        got = (e.status, e.code)
    except TwilioException as e:
        response = e.args[1]
        got = (response.status_code, json.loads(response.text).get("code"))
    else:
        raise AssertionError("expected HTTP %d" % status)
    assert got[0] == status and (code is None or got[1] == code), got


main = client(AC, TOKEN)

# The account.
account = main.api.accounts(AC).fetch()
assert account.sid == AC and account.status == "active" and account.type == "Full", account
account = main.api.accounts(AC).update(friendly_name="Acme Corp")
assert account.friendly_name == "Acme Corp"

# A subaccount: its token shown once; the parent's credentials reach it, never the reverse.
sub = main.api.accounts.create(friendly_name="Customer 42")
assert sub.sid.startswith("AC") and sub.owner_account_sid == AC and len(sub.auth_token) == 32, sub
listed = [a.sid for a in main.api.accounts.list()]
assert listed == [AC, sub.sid], listed
number = main.api.accounts(sub.sid).incoming_phone_numbers.create(
    phone_number="+14155550420", voice_url="http://127.0.0.1:9/voice")
assert number.account_sid == sub.sid
customer = client(sub.sid, sub.auth_token)
assert [n.phone_number for n in customer.incoming_phone_numbers.list()] == ["+14155550420"]
refused(lambda: customer.api.accounts(AC).fetch(), 404)
refused(lambda: customer.api.accounts.create(friendly_name="grandchild"), 400)

# API keys: the secret once; the key authenticates like the token until deleted.
key = main.new_keys.create(friendly_name="deploys")
assert key.sid.startswith("SK") and len(key.secret) == 32, key
assert [k.sid for k in main.keys.list()] == [key.sid]
with_key = client(key.sid, key.secret, account_sid=AC)
assert with_key.calls.list() == []
main.keys(key.sid).delete()
refused(lambda: with_key.calls.list(), 401, 20003)

# TwiML Applications, and a number that uses one.
app = main.applications.create(friendly_name="IVR", voice_url="https://ivr.example.com/voice",
                               voice_method="GET")
assert app.sid.startswith("AP") and app.voice_method == "GET", app
assert [a.sid for a in main.applications.list(friendly_name="IVR")] == [app.sid]
app = main.applications(app.sid).update(status_callback="https://ivr.example.com/status")
assert app.status_callback == "https://ivr.example.com/status"
line = main.incoming_phone_numbers.create(
    phone_number="+14155550430", voice_application_sid=app.sid, sms_application_sid=app.sid,
    sms_url="https://ivr.example.com/sms", sms_method="GET")
assert line.voice_application_sid == app.sid, line
assert (line.sms_application_sid, line.sms_url, line.sms_method) == (
    app.sid, "https://ivr.example.com/sms", "GET"), line
fetched = main.incoming_phone_numbers(line.sid).fetch()
assert fetched.sms_application_sid == app.sid and fetched.sms_url == "https://ivr.example.com/sms"
refused(lambda: main.incoming_phone_numbers(line.sid).update(
    sms_application_sid="AP00000000000000000000000000000000"), 400, 21218)
refused(lambda: main.incoming_phone_numbers(line.sid).update(
    voice_application_sid="AP00000000000000000000000000000000"), 400, 21218)
main.applications(app.sid).delete()
refused(lambda: main.applications(app.sid).fetch(), 404, 20404)

# The parent suspends the subaccount: it reads, cannot write (20005); then reactivates it.
main.api.accounts(sub.sid).update(status="suspended")
assert customer.incoming_phone_numbers.list()[0].phone_number == "+14155550420"
refused(lambda: customer.incoming_phone_numbers.create(
    phone_number="+14155550421", voice_url="http://127.0.0.1:9/voice"), 401, 20005)
main.api.accounts(sub.sid).update(status="active")
customer.incoming_phone_numbers(number.sid).update(friendly_name="main line")

# Closed is final.
main.api.accounts(sub.sid).update(status="closed")
refused(lambda: customer.calls.list(), 401, 20005)
print("ok")
