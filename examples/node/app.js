// The demo shop's JSON API (as crates/cli/src/demo) in Express, behind
// Sticky's sidecar: `PORT=3000 node app.js`, then
// `sticky web --config cluster.toml --name ws1 --app http://127.0.0.1:3000`
// (or `SOCKET=/run/shop.sock node app.js` and `--app unix:/run/shop.sock`).
"use strict";

const fs = require("fs");
const http = require("http");
const path = require("path");
const express = require("express");
const stickySession = require("./sticky-session");

const MAX_ITEMS = 100, MAX_ITEM_LEN = 64, MAX_NOTE_LEN = 4096, MAX_USER_LEN = 64;
const SHOP_HTML = process.env.SHOP_HTML || path.join(__dirname, "../../crates/cli/src/demo/shop.html");

const app = express();
app.use(express.json({ limit: "16kb", strict: false }));
app.use(stickySession);

function answer(req, res, body) {
  const s = req.session;
  res.json({ ...body, server: s.server, stamp: s.stamp, source: s.source });
}
const bad = (res, msg) => res.status(400).json({ error: msg });
const field = (req, name) => {
  const v = req.body && typeof req.body === "object" ? req.body[name] : undefined;
  return typeof v === "string" ? v : null;
};
const chars = (s) => [...s].length;
const cart = (req) => (Array.isArray(req.session.data.cart) ? [...req.session.data.cart] : []);

app.get("/", (req, res) => {
  res.type("html").send(fs.readFileSync(SHOP_HTML, "utf8").replace("{{server}}", req.session.server));
});

app.get("/api/cart", (req, res) => answer(req, res, { items: cart(req) }));

app.post("/api/cart/items", (req, res) => {
  let item = field(req, "item");
  if (item === null) return bad(res, 'expected {"item": "..."}');
  item = item.trim();
  if (!item || chars(item) > MAX_ITEM_LEN) return bad(res, "item must be 1 to 64 characters");
  const items = cart(req);
  if (items.length >= MAX_ITEMS) return bad(res, "the cart is full (100 items)");
  items.push(item);
  req.session.data.cart = items;
  answer(req, res, { items });
});

app.post("/api/cart/remove", (req, res) => {
  const item = field(req, "item");
  if (item === null) return bad(res, 'expected {"item": "..."}');
  const items = cart(req);
  const at = items.indexOf(item);
  if (at >= 0) {
    items.splice(at, 1);
    req.session.data.cart = items;
  }
  answer(req, res, { items });
});

app.post("/api/cart/clear", (req, res) => {
  delete req.session.data.cart;
  answer(req, res, { items: [] });
});

const counter = (req) => (Number.isInteger(req.session.data.counter) ? req.session.data.counter : 0);
app.get("/api/counter", (req, res) => answer(req, res, { value: counter(req) }));
app.post("/api/counter", (req, res) => {
  const value = counter(req) + 1;
  req.session.data.counter = value;
  answer(req, res, { value });
});

app.get("/api/note", (req, res) => answer(req, res, { text: req.session.data.note || "" }));
app.post("/api/note", (req, res) => {
  const text = field(req, "text");
  if (text === null) return bad(res, 'expected {"text": "..."}');
  if (chars(text) > MAX_NOTE_LEN) return bad(res, "the note must be at most 4096 characters");
  req.session.data.note = text;
  answer(req, res, { chars: chars(text) });
});

app.post("/api/login", (req, res) => {
  const user = field(req, "user");
  if (!user || chars(user) > MAX_USER_LEN) return bad(res, "the user must be 1 to 64 characters");
  req.session.data.user = user;
  req.session.rotate(); // a new id at login: one planted before is worthless
  answer(req, res, { user });
});

app.post("/api/logout", (req, res) => {
  req.session.destroy();
  answer(req, res, { logged_out: true });
});

// Node's default header limit (16 KiB in all) is below the sidecar's
// largest session (32 KiB of JSON, ~43 KiB in base64url): raise it.
const server = http.createServer({ maxHeaderSize: 64 * 1024 }, app);
server.keepAliveTimeout = 65 * 1000;
if (process.env.SOCKET) {
  // A Unix socket (`sticky web --app unix:$SOCKET`): cheaper than TCP.
  try { fs.unlinkSync(process.env.SOCKET); } catch (e) { if (e.code !== "ENOENT") throw e; }
  server.listen(process.env.SOCKET);
} else {
  server.listen(Number(process.env.PORT || 3000), "127.0.0.1");
}
// End with the process that started the app (`sticky up`, a test), even
// if it was killed with SIGKILL.
const parent = process.ppid;
setInterval(() => process.ppid !== parent && process.exit(0), 1000).unref();
process.on("SIGTERM", () => server.close(() => process.exit(0)));
