"""A webhook on loopback for the notification tests: a real HTTP server in a thread."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from resources.notifier import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature


class Webhook:
    """A webhook on 127.0.0.1 that answers each post with the next of `statuses` (then 200) and
    keeps what was posted. With a `secret` it is a receiver that checks signatures, as the README
    tells one to: a post whose signature does not verify is answered 401 and marked unverified."""

    def __init__(self, statuses=(), secret: str | None = None):
        self.statuses = list(statuses)
        self.secret = secret
        self.posts: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                verified = hook.secret is not None and verify_signature(
                    hook.secret, raw, self.headers[SIGNATURE_HEADER], self.headers[TIMESTAMP_HEADER])
                hook.posts.append({
                    "path": self.path, "type": self.headers["Content-Type"], "headers": dict(self.headers),
                    "raw": raw, "body": json.loads(raw), "verified": verified,
                })
                if hook.secret is not None and not verified:
                    status = 401
                else:
                    status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass  # keep the test output to what fails

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0/secret-token"
        # Polled often, so that leaving the `with` (shutdown) takes a few ms rather than the default 0.5 s.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
