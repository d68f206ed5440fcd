"""Rideshare number masking: a passenger and a driver each call the same proxy number and
are connected to each other; each sees the proxy number as the caller, never the other's
own number (`<Dial callerId>`).

    python app.py                        # the webhook of the proxy number

Settings (environment): DIALTONE_ACCOUNT_SID, DIALTONE_AUTH_TOKEN, PUBLIC_URL, PORT,
PROXY_NUMBER (the number both call), RIDES (the active rides, `passenger:driver,…` in
E.164).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from twilio.twiml.voice_response import Dial, VoiceResponse  # noqa: E402

from common import serve, setting  # noqa: E402

PROXY_NUMBER = setting("PROXY_NUMBER")


def rides():
    """Each party of an active ride, and whom they reach."""
    pairs = {}
    for ride in setting("RIDES").split(","):
        passenger, driver = ride.strip().split(":")
        pairs[passenger] = driver
        pairs[driver] = passenger
    return pairs


PAIRS = rides()


def voice(params):
    """Someone called the proxy number."""
    response = VoiceResponse()
    other = PAIRS.get(params.get("From", ""))
    if other is None:
        response.say("Sorry, we could not find a ride for this phone.")
        response.hangup()
        return response
    response.say("Connecting you.")
    dial = Dial(caller_id=PROXY_NUMBER, timeout=30)
    dial.number(other)
    response.append(dial)
    return response


if __name__ == "__main__":
    serve({"/voice": voice}, int(setting("PORT", "5000")))
