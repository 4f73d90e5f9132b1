"""The session Sticky's sidecar (`sticky web --app URL`) passes with each
request, for Flask: `init_app(app)`, then read and change `g.session.data`
(a dict); call `g.session.rotate()` at login, `g.session.destroy()` at
logout. Changes go back to the sidecar in the answer's headers, which it
stores before the client sees the answer (docs/sidecar.md)."""

import base64
import json

from flask import g, request


def _decode(text):
    if not text:
        return "{}"
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def _compact(data):
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _canonical(data):
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


class StickySession:
    def __init__(self, headers):
        # The JSON as the sidecar wrote it: unchanged data dumps to the
        # same text, so most requests cost one load and one dump.
        self._text = _decode(headers.get("sticky-session", ""))
        self.data = json.loads(self._text)
        self.source = headers.get("sticky-session-source", "new")
        self.server = headers.get("sticky-session-server", "")
        self._stamp = headers.get("sticky-session-stamp", "0.0")
        self._next_stamp = headers.get("sticky-session-next-stamp", "1.1")
        self.action = None

    def changed(self):
        if _compact(self.data) == self._text:
            return False
        # Other text: a change, unless only the key order (or number
        # spelling) differs.
        return _canonical(self.data) != _canonical(json.loads(self._text))

    @property
    def stamp(self):
        """The stamp the session carries once this request is stored."""
        return self._next_stamp if self.changed() else self._stamp

    def rotate(self):
        self.action = "rotate"

    def destroy(self):
        self.action = "destroy"


def init_app(app):
    @app.before_request
    def _open():
        g.session = StickySession(request.headers)

    @app.after_request
    def _close(response):
        s = g.get("session")
        if s is not None and s.changed():
            data = json.dumps(s.data, separators=(",", ":")).encode()
            response.headers["sticky-session-set"] = base64.urlsafe_b64encode(data).decode().rstrip("=")
        if s is not None and s.action:
            response.headers["sticky-session-action"] = s.action
        return response
