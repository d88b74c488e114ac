"""A local stand-in for Amazon Translate: TranslateText of the JSON 1.1 protocol, on loopback, over
a tiny dictionary. Not Amazon's service; it answers the documented request and response shapes."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TARGET = "AWSShineFrontendService_20170701.TranslateText"
CONTENT_TYPE = "application/x-amz-json-1.1"
# (source, target) -> {lowercased text: translation}: whole texts first, then word by word.
DICTIONARY: dict[tuple[str, str], dict[str, str]] = {
    ("es", "en"): {"espada": "sword", "roja": "red", "de": "of", "acero": "steel", "espada roja": "red sword"},
    ("fr", "en"): {"épée": "sword", "rouge": "red"},
    ("de", "en"): {"schwert": "sword", "rotes": "red"},
    ("ja", "en"): {"赤い剣": "red sword", "剣": "sword"},
}
ERROR_MESSAGES = {
    "ThrottlingException": "Rate exceeded",
    "InternalServerException": "An internal error occurred",
    "ServiceUnavailableException": "The service is temporarily unavailable",
}


class TranslateServer:
    """TranslateText on 127.0.0.1 (a free port): answers each request with the next of `failures`
    ((status, error code) pairs) first, then from DICTIONARY; keeps every request it read."""

    def __init__(self, failures: list[tuple[int, str]] | None = None):
        self.failures = list(failures or ())
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                server.requests.append({"target": self.headers["X-Amz-Target"], "body": body,
                                        "authorization": self.headers.get("Authorization", "")})
                status, answer = server.answer(self.headers["X-Amz-Target"], self.headers["Content-Type"], body)
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass  # keep the test output to what fails

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def answer(self, target: str | None, content_type: str | None, body: dict) -> tuple[int, dict]:
        """(status, JSON body) for one request, the service's way: errors as {__type, message}."""
        if self.failures:
            status, code = self.failures.pop(0)
            return status, {"__type": code, "message": ERROR_MESSAGES.get(code, code)}
        if target != TARGET or content_type != CONTENT_TYPE:
            return 400, {"__type": "UnknownOperationException", "message": f"unknown operation {target!r}"}
        missing = [k for k in ("Text", "SourceLanguageCode", "TargetLanguageCode") if not body.get(k)]
        if missing:
            return 400, {"__type": "ValidationException", "message": f"missing or empty: {', '.join(missing)}"}
        pair = (body["SourceLanguageCode"], body["TargetLanguageCode"])
        if pair not in DICTIONARY:
            return 400, {"__type": "UnsupportedLanguagePairException",
                         "message": f"Unsupported language pair: {pair[0]} to {pair[1]}"}
        words = DICTIONARY[pair]
        text = body["Text"]
        translated = words.get(text.lower()) or " ".join(words.get(w.lower(), w) for w in text.split())
        return 200, {"TranslatedText": translated, "SourceLanguageCode": pair[0], "TargetLanguageCode": pair[1]}

    def __enter__(self) -> TranslateServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
