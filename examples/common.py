"""What both examples share: settings from the environment, a Twilio client pointed at
Dialtone, and a small webhook server that checks X-Twilio-Signature (the standard library's
HTTP server: no web framework to install)."""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlparse

from twilio.request_validator import RequestValidator
from twilio.rest import Client


def setting(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit("set %s (see the example's README)" % name)
    return value


ACCOUNT_SID = setting("DIALTONE_ACCOUNT_SID")
AUTH_TOKEN = setting("DIALTONE_AUTH_TOKEN")
# Dialtone's API (Twilio's would be https://api.twilio.com).
API_URL = setting("DIALTONE_API_URL", "http://127.0.0.1:8080")
# Where Dialtone reaches this app.
PUBLIC_URL = setting("PUBLIC_URL", "http://127.0.0.1:5000").rstrip("/")


def client():
    """twilio-python, with only its base URL changed."""
    c = Client(ACCOUNT_SID, AUTH_TOKEN)
    c.api.base_url = API_URL
    return c


def serve(routes, port):
    """Serves `routes` (path -> function(params) -> TwiML string) to Dialtone's webhooks,
    refusing requests whose signature does not verify."""
    validator = RequestValidator(AUTH_TOKEN)

    class Webhooks(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            params = dict(parse_qsl(body, keep_blank_values=True))
            url = PUBLIC_URL + self.path
            if not validator.validate(url, params, self.headers.get("X-Twilio-Signature", "")):
                self.send_response(403)
                self.end_headers()
                return
            route = routes.get(urlparse(self.path).path)
            if route is None:
                self.send_response(404)
                self.end_headers()
                return
            query = dict(parse_qsl(urlparse(self.path).query))
            twiml = str(route({**query, **params})).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(twiml)))
            self.end_headers()
            self.wfile.write(twiml)

        def log_message(self, format, *args):
            print("webhook:", format % args, flush=True)

    server = ThreadingHTTPServer(("127.0.0.1", port), Webhooks)
    print("listening on %s (Dialtone reaches it at %s)" % (port, PUBLIC_URL), flush=True)
    server.serve_forever()
