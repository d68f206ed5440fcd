"""Delivery notification: the shop calls its customer to say where the order is, and the
customer presses 1 to speak to an agent, who is dialled into the call.

    python app.py serve                  # the webhooks Dialtone asks for TwiML
    python app.py notify 1042 +14155550123   # call a customer about order 1042

Settings (environment): DIALTONE_ACCOUNT_SID, DIALTONE_AUTH_TOKEN, DIALTONE_API_URL,
PUBLIC_URL (where Dialtone reaches this app), PORT, STORE_NUMBER (the shop's number, the
caller ID), AGENT (the agent's number, or a sip: URI).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from twilio.twiml.voice_response import Dial, Gather, VoiceResponse  # noqa: E402

from common import PUBLIC_URL, client, serve, setting  # noqa: E402

STORE_NUMBER = setting("STORE_NUMBER")
AGENT = setting("AGENT")

# The shop's orders (a database in a real shop).
ORDERS = {
    "1042": "out for delivery and arrives between two and three p.m.",
    "1043": "being prepared",
}


def status(params):
    """What the customer hears when they answer."""
    order = params.get("order", "")
    response = VoiceResponse()
    gather = Gather(num_digits=1, action="/agent?order=%s" % order, timeout=6)
    gather.say("Hello from Pizza Place. Your order %s is %s. "
               "Press 1 to speak to an agent." % (order, ORDERS.get(order, "on its way")))
    response.append(gather)
    response.say("Thank you. Goodbye.")
    return response


def agent(params):
    """The customer pressed a key."""
    response = VoiceResponse()
    if params.get("Digits") != "1":
        response.say("Goodbye.")
        return response
    response.say("Connecting you to an agent.")
    dial = Dial(caller_id=STORE_NUMBER, timeout=20)
    if AGENT.startswith("sip:"):
        dial.sip(AGENT)
    else:
        dial.number(AGENT)
    response.append(dial)
    return response


def notify(order, customer):
    call = client().calls.create(
        to=customer, from_=STORE_NUMBER, url="%s/status?order=%s" % (PUBLIC_URL, order))
    print(call.sid, flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve({"/status": status, "/agent": agent}, int(setting("PORT", "5000")))
    elif sys.argv[1:2] == ["notify"] and len(sys.argv) == 4:
        notify(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)
