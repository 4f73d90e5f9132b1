// The session Sticky's sidecar (`sticky web --app URL`) passes with each
// request, for Express: `app.use(stickySession)`, then read and change
// `req.session.data` (an object); call `req.session.rotate()` at login,
// `req.session.destroy()` at logout. Changes go back to the sidecar in the
// answer's headers, which it stores before the client sees the answer
// (docs/sidecar.md).
"use strict";

function decode(text) {
  return text ? Buffer.from(text, "base64url").toString("utf8") : "{}";
}

// Key order does not make a change (the sidecar compares objects too).
function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

class StickySession {
  constructor(req) {
    // The JSON as the sidecar wrote it: unchanged data stringifies to the
    // same text, so most requests cost one parse and one stringify.
    this.text = decode(req.get("sticky-session"));
    this.data = JSON.parse(this.text);
    this.source = req.get("sticky-session-source") || "new";
    this.server = req.get("sticky-session-server") || "";
    this.current = req.get("sticky-session-stamp") || "0.0";
    this.next = req.get("sticky-session-next-stamp") || "1.1";
    this.action = null;
  }
  changed() {
    const now = JSON.stringify(this.data);
    if (now === this.text) return false;
    // Other text: a change, unless only the key order (or number
    // spelling) differs.
    return canonical(this.data) !== canonical(JSON.parse(this.text));
  }
  // The stamp the session carries once this request is stored.
  get stamp() { return this.changed() ? this.next : this.current; }
  rotate() { this.action = "rotate"; }
  destroy() { this.action = "destroy"; }
  // Called before the answer's headers go out.
  headers(res) {
    if (this.changed()) {
      res.set("sticky-session-set", Buffer.from(JSON.stringify(this.data)).toString("base64url"));
    }
    if (this.action) res.set("sticky-session-action", this.action);
  }
}

module.exports = function stickySession(req, res, next) {
  const session = new StickySession(req);
  req.session = session;
  const writeHead = res.writeHead;
  res.writeHead = function (...args) {
    session.headers(res);
    return writeHead.apply(this, args);
  };
  next();
};
