# Sourced by the load scripts: a threaded TwiML app on 127.0.0.1 that answers every webhook
# with "$TWIML". Expects WORK, TWIML, PIDS and free_port (common.sh); sets APP_PORT.

APP_PORT=$(free_port)
cat >"$WORK/app.py" <<'PY'
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TWIML = sys.argv[2].encode()

class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the webhook client reuses connections
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle plus the client's
    # delayed ACK would add 40 ms to every webhook (and to every INVITE→200).
    disable_nagle_algorithm = True

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(TWIML)))
        self.end_headers()
        self.wfile.write(TWIML)

    do_GET = answer
    do_POST = answer

    def log_message(self, *args):
        pass

ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.request_queue_size = 1024
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), App).serve_forever()
PY
python3 "$WORK/app.py" "$APP_PORT" "$TWIML" &
PIDS+=($!)

