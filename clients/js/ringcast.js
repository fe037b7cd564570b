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

  /// The position to resume `channel` from, if any message of it was seen.
  position(channel) {
    return this.positions.get(channel);
  }

  connect() {
    const base = this.urls[this.turn % this.urls.length].replace(/\/+$/, "");
    this.turn += 1;
    this.onStatus("connecting", base);
    if (this.transport === "websocket") this.connectWebSocket(base);
    else this.connectSse(base);
  }

  sinceList() {
    return this.channels.map((c) => this.positions.get(c) || "").join(",");
  }

  connectWebSocket(base) {
    // Channel names and positions are URL-safe; the gateway reads the query as it is
    // (no percent-decoding), so it is written by hand, not with URLSearchParams.
    let query = `channels=${this.channels.join(",")}&format=json`;
    const since = this.sinceList();
    if (since.replace(/,/g, "") !== "") query += `&since=${since}`;
    const ws = new WebSocket(`${base}/?${query}`);
    this.sockets = [ws];
    ws.onopen = () => {
      this.failures = 0;
      this.onStatus("open", base);
    };
    ws.onmessage = (event) => this.handle(JSON.parse(event.data));
    ws.onclose = () => this.lost(ws);
  }

  connectSse(base) {
    const http = base.replace(/^ws/, "http");
    this.sockets = this.channels.map((channel) => {
      const since = this.positions.get(channel);
      const url = `${http}/sse/${channel}${since ? `?since=${since}` : ""}`;
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
      // EventSource retries by itself on the same URL; we move on to the next one.
      source.onerror = () => {
        if (source.readyState !== SSE_CLOSED) source.close();
        this.lost(source);
      };
      return source;
    });
  }

  handle(object) {
    const position = object.epoch ? `${object.epoch}:${object.offset}` : null;
    if (object.type === "subscribed") {
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

  lost(socket) {
    if (!this.sockets.includes(socket)) return;
    this.drop();
    if (this.stopped) return;
    this.failures += 1;
    const ceiling = Math.min(this.maxDelay, this.minDelay * 2 ** (this.failures - 1));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.onStatus("reconnecting", delay);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  drop() {
    const sockets = this.sockets;
    this.sockets = [];
    for (const s of sockets) {
      s.onclose = null;
      s.onerror = null;
      s.close();
    }
  }
}

function base64Bytes(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}
