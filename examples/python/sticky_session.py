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
        return {}
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def _canonical(data):
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


class StickySession:
    def __init__(self, headers):
        self.data = _decode(headers.get("sticky-session", ""))
        self._original = _canonical(self.data)
        self.source = headers.get("sticky-session-source", "new")
        self.server = headers.get("sticky-session-server", "")
        self._stamp = headers.get("sticky-session-stamp", "0.0")
        self._next_stamp = headers.get("sticky-session-next-stamp", "1.1")
        self.action = None

    def changed(self):
        return _canonical(self.data) != self._original

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
