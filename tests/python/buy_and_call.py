"""The seed's developer journey with Twilio's helper library (twilio-python), only the base
URL changed: a customer account (a subaccount) searches the operator's inventory by area
code, buys the first number, points it at a TwiML Application and takes a call on it; its
usage shows the call and the number's rental, and its balance went down by exactly those.

`setup` prints the number and the customer's credentials as JSON (the test then calls the
number with sipp); `check` verifies the money and suspends the customer (whose number the
test then calls again, to be refused). Settings from the environment: DIALTONE_URL,
DIALTONE_AC, DIALTONE_TOKEN, DIALTONE_OPERATOR_TOKEN, APP_URL; `check` also CUSTOMER_AC,
CUSTOMER_TOKEN, BALANCE_BEFORE.
"""
import json
import os
import sys
import urllib.parse
import urllib.request
from decimal import Decimal

from twilio.rest import Client

URL = os.environ["DIALTONE_URL"]
AC = os.environ["DIALTONE_AC"]
TOKEN = os.environ["DIALTONE_TOKEN"]


def client(username, password):
    c = Client(username, password)
    c.api.base_url = URL
    return c


def credit(account, amount):
    """The operator's endpoint (not Twilio's): records a payment for the account."""
    request = urllib.request.Request(
        "%s/v1/Accounts/%s/Credits" % (URL, account),
        data=urllib.parse.urlencode({"Amount": amount, "Reference": "signup"}).encode(),
        headers={"Authorization": "Bearer " + os.environ["DIALTONE_OPERATOR_TOKEN"]},
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


main = client(AC, TOKEN)

if sys.argv[1] == "setup":
    customer_account = main.api.accounts.create(friendly_name="Pizza Place")
    customer = client(customer_account.sid, customer_account.auth_token)
    # The card swiped at sign-up.
    credit(customer_account.sid, "5.00")
    before = customer.balance.fetch()
    assert before.balance == "5.00000" and before.currency == "USD", (before.balance, before.currency)
    # A local number in San Francisco.
    available = customer.available_phone_numbers("US").local.list(area_code=415, limit=5)
    assert available and all(n.phone_number.startswith("+1415") for n in available), available
    assert available[0].locality == "San Francisco" and available[0].capabilities["voice"]
    app = customer.applications.create(friendly_name="Orders", voice_url=os.environ["APP_URL"])
    number = customer.incoming_phone_numbers.create(
        phone_number=available[0].phone_number, voice_application_sid=app.sid)
    assert number.voice_application_sid == app.sid and number.account_sid == customer_account.sid
    # Bought: nobody else finds it any more.
    again = [n.phone_number for n in customer.available_phone_numbers("US").local.list(area_code=415)]
    assert number.phone_number not in again, again
    print(json.dumps({
        "number": number.phone_number,
        "account_sid": customer_account.sid,
        "auth_token": customer_account.auth_token,
        "balance": before.balance,
    }))
elif sys.argv[1] == "check":
    customer = client(os.environ["CUSTOMER_AC"], os.environ["CUSTOMER_TOKEN"])
    calls = customer.calls.list()
    assert len(calls) == 1 and calls[0].status == "completed", [(c.sid, c.status) for c in calls]
    charge = -Decimal(calls[0].price)
    assert charge > 0, calls[0].price
    rentals = customer.usage.records.list(category="phonenumbers")
    assert len(rentals) == 1 and rentals[0].count == "1", [(r.category, r.count) for r in rentals]
    rental = Decimal(rentals[0].price)
    assert rental == Decimal("1.15"), rental
    inbound = customer.usage.records.list(category="calls-inbound")
    assert Decimal(inbound[0].price) == charge, (inbound[0].price, charge)
    after = Decimal(customer.balance.fetch().balance)
    before = Decimal(os.environ["BALANCE_BEFORE"])
    assert before - after == charge + rental, (before, after, charge, rental)
    # The operator suspends the customer: its number takes no calls.
    main.api.accounts(os.environ["CUSTOMER_AC"]).update(status="suspended")
    print("ok")
