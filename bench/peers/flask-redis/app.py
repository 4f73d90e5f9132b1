"""bench/sidecar.sh's peer of examples/python/app.py: the demo shop's same
JSON API in Flask, with the Python ecosystem's usual Redis-backed sessions
instead of Sticky's sidecar: Flask-Session's Redis backend (redis-py)
against a real redis-server.

    PORT=3001 REDIS_URL=redis://127.0.0.1:6379 .venv/bin/python app.py

Configured as Flask-Session's documentation shows (`SESSION_TYPE =
"redis"`, `SESSION_REDIS`), with a 30-minute permanent session (Sticky's
default idle timeout) and Flask's `SESSION_REFRESH_EACH_REQUEST` off, so a
read costs one Redis GET and a write a GET plus a SET, both done before the
answer leaves (as bench/peers/tower-sessions-app). Left on (Flask's
default) it would rewrite the session on every read: this is the cheaper
setting. Served like the example: Waitress, 8 threads."""

import os
import threading
import time
from datetime import timedelta

import redis
from flask import Flask, jsonify, request, session
from flask_session import Session

MAX_ITEMS, MAX_ITEM_LEN, MAX_NOTE_LEN, MAX_USER_LEN = 100, 64, 4096, 64
SERVER = os.environ.get("STICKY_SERVER", "peer")

app = Flask(__name__)
app.config.update(
    MAX_CONTENT_LENGTH=16 * 1024,
    SECRET_KEY=os.environ.get("SESSION_SECRET", "bench-flask-redis-secret"),
    SESSION_TYPE="redis",
    SESSION_REDIS=redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")),
    SESSION_PERMANENT=True,
    PERMANENT_SESSION_LIFETIME=timedelta(minutes=30),
    SESSION_REFRESH_EACH_REQUEST=False,
)
Session(app)


def answer(body):
    return jsonify({**body, "server": SERVER})


def bad(msg):
    return jsonify({"error": msg}), 400


def field(name):
    body = request.get_json(silent=True)
    value = body.get(name) if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


@app.get("/")
def page():
    return f"flask-redis peer ({SERVER})\n", 200, {"content-type": "text/plain"}


@app.get("/api/cart")
def cart():
    return answer({"items": session.get("cart", [])})


@app.post("/api/cart/items")
def add_item():
    item = field("item")
    if item is None:
        return bad("expected {\"item\": \"...\"}")
    item = item.strip()
    if not item or len(item) > MAX_ITEM_LEN:
        return bad("item must be 1 to 64 characters")
    items = list(session.get("cart", []))
    if len(items) >= MAX_ITEMS:
        return bad("the cart is full (100 items)")
    items.append(item)
    session["cart"] = items
    return answer({"items": items})


@app.post("/api/cart/remove")
def remove_item():
    item = field("item")
    if item is None:
        return bad("expected {\"item\": \"...\"}")
    items = list(session.get("cart", []))
    if item in items:
        items.remove(item)
        session["cart"] = items
    return answer({"items": items})


@app.post("/api/cart/clear")
def clear_cart():
    session.pop("cart", None)
    return answer({"items": []})


@app.get("/api/counter")
def counter():
    return answer({"value": session.get("counter", 0)})


@app.post("/api/counter")
def increment():
    value = session.get("counter", 0) + 1
    session["counter"] = value
    return answer({"value": value})


@app.get("/api/note")
def note():
    return answer({"text": session.get("note", "")})


@app.post("/api/note")
def set_note():
    text = field("text")
    if text is None:
        return bad("expected {\"text\": \"...\"}")
    if len(text) > MAX_NOTE_LEN:
        return bad("the note must be at most 4096 characters")
    session["note"] = text
    return answer({"chars": len(text)})


@app.post("/api/login")
def login():
    user = field("user")
    if not user or len(user) > MAX_USER_LEN:
        return bad("the user must be 1 to 64 characters")
    session["user"] = user
    app.session_interface.regenerate(session)  # a new id at login: one planted before is worthless
    return answer({"user": user})


@app.post("/api/logout")
def logout():
    session.clear()
    return answer({"logged_out": True})


def exit_with_parent():
    """Ends the app when the process that started it (the bench) is gone,
    even if it was killed with SIGKILL."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


if __name__ == "__main__":
    from waitress import serve

    threading.Thread(target=exit_with_parent, daemon=True).start()
    serve(app, host="127.0.0.1", port=int(os.environ.get("PORT", "3001")), threads=8, ident=None, _quiet=True)
