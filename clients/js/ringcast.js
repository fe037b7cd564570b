// ringcast.js: a small, dependency-free browser client for the ringcast gateway.
//
//   import { RingcastClient } from "./ringcast.js";
//   const client = new RingcastClient(["wss://a.example", "wss://b.example"], {
//     channels: ["news"],
//     onMessage: (channel, data, position) => { ... },
//     onRecovered: (channel, recovered, position) => { if (!recovered) refetch(); },
//   });
//   client.start();
//
// It connects to one of `urls` (WebSocket, JSON framing), remembers the position
// (`<epoch>:<offset>`) of the last message of every channel, and whenever the
// connection ends it reconnects — to the next URL, after a jittered exponential
// backoff — with `since=` those positions, so the gateway delivers exactly what was
// missed (or says `recovered:false`: the app must then refetch its state). Where
// WebSocket is unavailable (or with `transport: "sse"`) it uses one EventSource per
// channel on the same host (`/sse/<channel>?since=`), with the same reconnect rules.
//
// Tokens: `token` is a token string or a function (may be async) that returns one; it
// is asked before every connection (a WebSocket sends it as the `token.<token>`
// subprotocol, an event stream as `?token=`). With a function, the client also
// refreshes the token of an open WebSocket `refreshMargin` ms (default 30 s) before it
// expires (`{"type":"refresh"}`; the expiry is read from the token: JWT or v1), and a
// connection closed because its token expired (4001, SSE `token_expired`) reconnects at
// once with a new one. A connection the server disconnected (4003, SSE
// `disconnected`: the admin API's `POST /disconnect`) is not reconnected: status
// `disconnected`.

const SSE_CLOSED = 2;

export class RingcastClient {
  constructor(urls, options = {}) {
    if (!Array.isArray(urls) || urls.length === 0) throw new Error("urls: at least one");
    this.urls = urls;
    this.channels = options.channels || [];
    this.onMessage = options.onMessage || (() => {});
    this.onRecovered = options.onRecovered || (() => {});
    this.onStatus = options.onStatus || (() => {});
    this.minDelay = options.minDelay ?? 250;
    this.maxDelay = options.maxDelay ?? 10000;
    this.token = options.token;
    this.refreshMargin = options.refreshMargin ?? 30000;
    this.refreshTimer = null;
    this.transport = options.transport
      || (typeof WebSocket === "function" ? "websocket" : "sse");
    this.positions = new Map(); // channel -> "<epoch>:<offset>"
    this.turn = 0;
    this.failures = 0;
    this.stopped = true;
    this.sockets = [];
    this.timer = null;
  }

  /// Connects (to the first URL).
  start() {
    this.stopped = false;
    this.connect();
  }

  /// Closes for good.
  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.drop();
  }

  /// The token for the next connection or refresh (none without the `token` option).
  async nextToken() {
    return typeof this.token === "function" ? await this.token() : this.token;
  }

  /// Arms the refresh of the open WebSocket's token `refreshMargin` before `exp` (unix
  /// seconds), when tokens come from a function.
  scheduleRefresh(ws, exp) {
    clearTimeout(this.refreshTimer);
    if (typeof this.token !== "function" || !exp) return;
    const wait = Math.max(0, exp * 1000 - Date.now() - this.refreshMargin);
    this.refreshTimer = setTimeout(async () => {
      const token = await this.nextToken();
      if (this.sockets[0] === ws && ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({ type: "refresh", token }));
      }
    }, wait);
  }

  /// The position to resume `channel` from, if any message of it was seen.
  position(channel) {
    return this.positions.get(channel);
  }

  async connect() {
    const base = this.urls[this.turn % this.urls.length].replace(/\/+$/, "");
    this.turn += 1;
    this.onStatus("connecting", base);
    let token;
    try {
      token = await this.nextToken();
    } catch (err) {
      this.onStatus("token_error", String(err));
      this.lost(null);
      return;
    }
    if (this.stopped) return;
    if (this.transport === "websocket") this.connectWebSocket(base, token);
    else this.connectSse(base, token);
  }

  sinceList() {
    return this.channels.map((c) => this.positions.get(c) || "").join(",");
  }

  connectWebSocket(base, token) {
    // Channel names and positions are URL-safe; the gateway reads the query as it is
    // (no percent-decoding), so it is written by hand, not with URLSearchParams.
    let query = `channels=${this.channels.join(",")}&format=json`;
    const since = this.sinceList();
    if (since.replace(/,/g, "") !== "") query += `&since=${since}`;
    const protocols = token ? [`token.${token}`] : [];
    const ws = new WebSocket(`${base}/?${query}`, protocols);
    this.sockets = [ws];
    ws.onopen = () => {
      this.failures = 0;
      this.onStatus("open", base);
      this.scheduleRefresh(ws, tokenExpiry(token));
    };
    ws.onmessage = (event) => this.handle(JSON.parse(event.data), ws);
    ws.onclose = (event) => {
      if (event.code === DISCONNECTED) this.disconnected(ws);
      else this.lost(ws, event.code === TOKEN_EXPIRED);
    };
  }

  connectSse(base, token) {
    const http = base.replace(/^ws/, "http");
    this.sockets = this.channels.map((channel) => {
      const since = this.positions.get(channel);
      const query = [since && `since=${since}`, token && `token=${token}`].filter(Boolean);
      const url = `${http}/sse/${channel}${query.length ? `?${query.join("&")}` : ""}`;
      const source = new EventSource(url);
      source.onopen = () => {
        this.failures = 0;
        this.onStatus("open", base);
      };
      const deliver = (data) => (event) => {
        if (event.lastEventId) this.positions.set(channel, event.lastEventId);
        this.onMessage(channel, data(event.data), event.lastEventId || null);
      };
      source.onmessage = deliver((d) => d);
      source.addEventListener("binary", deliver((d) => base64Bytes(d)));
      source.addEventListener("reset", (event) => {
        const at = JSON.parse(event.data);
        const position = at.epoch ? `${at.epoch}:${at.offset}` : null;
        if (position) this.positions.set(channel, position);
        this.onRecovered(channel, false, position);
      });
      source.addEventListener("token_expired", () => this.lost(source, true));
      source.addEventListener("disconnected", () => this.disconnected(source));
      // EventSource retries by itself on the same URL; we move on to the next one.
      source.onerror = () => {
        if (source.readyState !== SSE_CLOSED) source.close();
        this.lost(source);
      };
      return source;
    });
  }

  handle(object, ws) {
    const position = object.epoch ? `${object.epoch}:${object.offset}` : null;
    if (object.type === "refreshed") {
      this.onStatus("refreshed", object.exp);
      this.scheduleRefresh(ws, object.exp);
    } else if (object.type === "refresh") {
      this.onStatus("refresh_error", object.error);
    } else if (object.type === "subscribed") {
      if (position) this.positions.set(object.channel, position);
      if (object.recovered !== undefined) {
        this.onRecovered(object.channel, object.recovered, position);
      }
    } else if (object.type === "message") {
      if (position) this.positions.set(object.channel, position);
      const data = object.base64 !== undefined ? base64Bytes(object.base64) : object.data;
      this.onMessage(object.channel, data, position);
    }
  }

  /// The connection ended: reconnect after a backoff (at once when it ended because its
  /// token expired, with a fresh token).
  lost(socket, tokenExpired = false) {
    if (socket !== null && !this.sockets.includes(socket)) return;
    this.drop();
    if (this.stopped) return;
    const fresh = tokenExpired && typeof this.token === "function";
    this.failures = fresh ? 0 : this.failures + 1;
    const ceiling = Math.min(this.maxDelay, this.minDelay * 2 ** (this.failures - 1));
    const delay = fresh ? 0 : ceiling / 2 + Math.random() * (ceiling / 2);
    this.onStatus("reconnecting", delay);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /// The server disconnected this client on purpose: no reconnect.
  disconnected(socket) {
    if (!this.sockets.includes(socket)) return;
    this.stopped = true;
    this.drop();
    this.onStatus("disconnected");
  }

  drop() {
    clearTimeout(this.refreshTimer);
    const sockets = this.sockets;
    this.sockets = [];
    for (const s of sockets) {
      s.onclose = null;
      s.onerror = null;
      s.close();
    }
  }
}

/// WebSocket close codes the gateway uses for a token that expired and for a
/// disconnect through the admin API.
const TOKEN_EXPIRED = 4001;
const DISCONNECTED = 4003;

/// A token's `exp` (unix seconds): a JWT's payload claim or a v1 token's `exp=`.
function tokenExpiry(token) {
  if (!token) return null;
  try {
    const parts = token.split(".");
    const text = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/"));
    if (parts[0] === "v1") return Number(new URLSearchParams(text).get("exp")) || null;
    return Number(JSON.parse(text).exp) || null;
  } catch {
    return null;
  }
}

function base64Bytes(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}
