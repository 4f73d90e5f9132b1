// bench/sidecar.sh's peer of examples/node/app.js: the demo shop's same
// JSON API in Express, with the Node ecosystem's usual Redis-backed
// sessions instead of Sticky's sidecar: express-session + connect-redis
// over the `redis` client, against a real redis-server.
//
//   PORT=3001 REDIS_URL=redis://127.0.0.1:6379 node app.js
//
// Configured as express-session's documentation recommends (`resave:
// false`, `saveUninitialized: false`), with a 30-minute cookie (Sticky's
// default idle timeout) and connect-redis's `disableTouch`, so a read costs
// one Redis GET and a write a GET plus a SET, both awaited before the
// answer leaves (as bench/peers/tower-sessions-app). Touch on (the default)
// would add an EXPIRE to every read: this is the cheaper setting.
// Served like the example: plain `http`, one process, 64 KiB of headers.
"use strict";

const http = require("http");
const express = require("express");
const session = require("express-session");
const { RedisStore } = require("connect-redis");
const { createClient } = require("redis");

const MAX_ITEMS = 100, MAX_ITEM_LEN = 64, MAX_NOTE_LEN = 4096, MAX_USER_LEN = 64;
const SERVER = process.env.STICKY_SERVER || "peer";

const redis = createClient({ url: process.env.REDIS_URL || "redis://127.0.0.1:6379" });
redis.on("error", (e) => console.error("redis:", e.message));

const app = express();
app.use(express.json({ limit: "16kb", strict: false }));
app.use(
  session({
    store: new RedisStore({ client: redis, disableTouch: true }),
    secret: process.env.SESSION_SECRET || "bench-express-redis-secret",
    name: "sid",
    resave: false,
    saveUninitialized: false,
    cookie: { httpOnly: true, sameSite: "lax", maxAge: 30 * 60 * 1000 },
  }),
);

const answer = (req, res, body) => res.json({ ...body, server: SERVER });
const bad = (res, msg) => res.status(400).json({ error: msg });
const failed = (res, err) => res.status(500).type("text").send(`session error: ${err.message}\n`);
const field = (req, name) => {
  const v = req.body && typeof req.body === "object" ? req.body[name] : undefined;
  return typeof v === "string" ? v : null;
};
const chars = (s) => [...s].length;
const cart = (req) => (Array.isArray(req.session.cart) ? [...req.session.cart] : []);

app.get("/", (req, res) => res.type("text").send(`express-redis peer (${SERVER})\n`));

app.get("/api/cart", (req, res) => answer(req, res, { items: cart(req) }));

app.post("/api/cart/items", (req, res) => {
  let item = field(req, "item");
  if (item === null) return bad(res, 'expected {"item": "..."}');
  item = item.trim();
  if (!item || chars(item) > MAX_ITEM_LEN) return bad(res, "item must be 1 to 64 characters");
  const items = cart(req);
  if (items.length >= MAX_ITEMS) return bad(res, "the cart is full (100 items)");
  items.push(item);
  req.session.cart = items;
  answer(req, res, { items });
});

app.post("/api/cart/remove", (req, res) => {
  const item = field(req, "item");
  if (item === null) return bad(res, 'expected {"item": "..."}');
  const items = cart(req);
  const at = items.indexOf(item);
  if (at >= 0) {
    items.splice(at, 1);
    req.session.cart = items;
  }
  answer(req, res, { items });
});

app.post("/api/cart/clear", (req, res) => {
  delete req.session.cart;
  answer(req, res, { items: [] });
});

const counter = (req) => (Number.isInteger(req.session.counter) ? req.session.counter : 0);
app.get("/api/counter", (req, res) => answer(req, res, { value: counter(req) }));
app.post("/api/counter", (req, res) => {
  const value = counter(req) + 1;
  req.session.counter = value;
  answer(req, res, { value });
});

app.get("/api/note", (req, res) => answer(req, res, { text: req.session.note || "" }));
app.post("/api/note", (req, res) => {
  const text = field(req, "text");
  if (text === null) return bad(res, 'expected {"text": "..."}');
  if (chars(text) > MAX_NOTE_LEN) return bad(res, "the note must be at most 4096 characters");
  req.session.note = text;
  answer(req, res, { chars: chars(text) });
});

app.post("/api/login", (req, res) => {
  const user = field(req, "user");
  if (!user || chars(user) > MAX_USER_LEN) return bad(res, "the user must be 1 to 64 characters");
  const kept = { cart: req.session.cart, counter: req.session.counter, note: req.session.note };
  // A new id at login: one planted before is worthless.
  req.session.regenerate((err) => {
    if (err) return failed(res, err);
    Object.assign(req.session, kept, { user });
    answer(req, res, { user });
  });
});

app.post("/api/logout", (req, res) => {
  req.session.destroy((err) => {
    if (err) return failed(res, err);
    res.clearCookie("sid");
    answer(req, res, { logged_out: true });
  });
});

const server = http.createServer({ maxHeaderSize: 64 * 1024 }, app);
server.keepAliveTimeout = 65 * 1000;
redis.connect().then(
  () => server.listen(Number(process.env.PORT || 3001), "127.0.0.1"),
  (e) => {
    console.error(`express-redis: cannot reach redis: ${e.message}`);
    process.exit(1);
  },
);
// End with the process that started the app (the bench), even if it was
// killed with SIGKILL.
const parent = process.ppid;
setInterval(() => process.ppid !== parent && process.exit(0), 1000).unref();
process.on("SIGTERM", () => server.close(() => redis.quit().finally(() => process.exit(0))));
