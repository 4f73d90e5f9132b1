"""The demo shop's JSON API (as crates/cli/src/demo) in Flask, behind
Sticky's sidecar: `PORT=3000 python3 app.py`, then
`sticky web --config cluster.toml --name ws1 --app http://127.0.0.1:3000`
(or `SOCKET=/run/shop.sock python3 app.py` and `--app unix:/run/shop.sock`)."""

import os
import threading
import time
from pathlib import Path

from flask import Flask, g, jsonify, request

import sticky_session

MAX_ITEMS, MAX_ITEM_LEN, MAX_NOTE_LEN, MAX_USER_LEN = 100, 64, 4096, 64
HERE = Path(__file__).resolve().parent
SHOP_HTML = Path(os.environ.get("SHOP_HTML", HERE / "../../crates/cli/src/demo/shop.html"))

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 16 * 1024
sticky_session.init_app(app)


def answer(body):
    s = g.session
    return jsonify({**body, "server": s.server, "stamp": s.stamp, "source": s.source})


def bad(msg):
    return jsonify({"error": msg}), 400


def field(name):
    body = request.get_json(silent=True)
    value = body.get(name) if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


@app.get("/")
def page():
    return SHOP_HTML.read_text().replace("{{server}}", g.session.server)


@app.get("/api/cart")
def cart():
    return answer({"items": g.session.data.get("cart", [])})


@app.post("/api/cart/items")
def add_item():
    item = field("item")
    if item is None:
        return bad("expected {\"item\": \"...\"}")
    item = item.strip()
    if not item or len(item) > MAX_ITEM_LEN:
        return bad("item must be 1 to 64 characters")
    items = list(g.session.data.get("cart", []))
    if len(items) >= MAX_ITEMS:
        return bad("the cart is full (100 items)")
    items.append(item)
    g.session.data["cart"] = items
    return answer({"items": items})


@app.post("/api/cart/remove")
def remove_item():
    item = field("item")
    if item is None:
        return bad("expected {\"item\": \"...\"}")
    items = list(g.session.data.get("cart", []))
    if item in items:
        items.remove(item)
        g.session.data["cart"] = items
    return answer({"items": items})


@app.post("/api/cart/clear")
def clear_cart():
    g.session.data.pop("cart", None)
    return answer({"items": []})


@app.get("/api/counter")
def counter():
    return answer({"value": g.session.data.get("counter", 0)})


@app.post("/api/counter")
def increment():
    value = g.session.data.get("counter", 0) + 1
    g.session.data["counter"] = value
    return answer({"value": value})


@app.get("/api/note")
def note():
    return answer({"text": g.session.data.get("note", "")})


@app.post("/api/note")
def set_note():
    text = field("text")
    if text is None:
        return bad("expected {\"text\": \"...\"}")
    if len(text) > MAX_NOTE_LEN:
        return bad("the note must be at most 4096 characters")
    g.session.data["note"] = text
    return answer({"chars": len(text)})


@app.post("/api/login")
def login():
    user = field("user")
    if not user or len(user) > MAX_USER_LEN:
        return bad("the user must be 1 to 64 characters")
    g.session.data["user"] = user
    g.session.rotate()  # a new id at login: one planted before is worthless
    return answer({"user": user})


@app.post("/api/logout")
def logout():
    g.session.destroy()
    return answer({"logged_out": True})


def exit_with_parent():
    """Ends the app when the process that started it (`sticky up`, a test)
    is gone, even if it was killed with SIGKILL."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


if __name__ == "__main__":
    threading.Thread(target=exit_with_parent, daemon=True).start()
    port = int(os.environ.get("PORT", "3000"))
    try:
        # A production WSGI server: keeps connections to the sidecar open.
        from waitress import serve
    except ImportError:
        # Flask's own server closes every connection after one answer.
        app.run(host="127.0.0.1", port=port, threaded=True)
    else:
        socket_path = os.environ.get("SOCKET")
        if socket_path:
            # A Unix socket (`sticky web --app unix:$SOCKET`): cheaper than TCP.
            serve(app, unix_socket=socket_path, unix_socket_perms="600", threads=8, ident=None, _quiet=True)
        else:
            serve(app, host="127.0.0.1", port=port, threads=8, ident=None, _quiet=True)
