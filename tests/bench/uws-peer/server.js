// uWebSockets.js baseline server for tests/bench/compare.sh, written the way the uWS.js
// examples show pub/sub (`ws.subscribe(topic)` at open, `app.publish(topic, message)`),
// with the same external interface as ringcast:
//   ws://HOST:PORT/<channel>  subscribes to <channel>; ws://HOST:PORT/echo echoes;
//   POST /publish/<channel> on the admin port publishes the body (text if valid UTF-8);
//   GET /metrics: uwspeer_connections, uwspeer_messages_delivered_total.
// uWS.js pub/sub lives in one App, so the admin port is one more listener of the same App
// (a WebSocket upgrade there works too; the benchmark never sends one).
// Usage: node server.js --listen 127.0.0.1:15000-15003 --admin 127.0.0.1:9590
'use strict';

const uWS = require('uwebsockets');
const { arg, parseListen, CHANNEL } = require('../peer-args.js');

const listen = parseListen(arg('--listen', '127.0.0.1:15000'));
const admin = parseListen(arg('--admin', '127.0.0.1:9590'));
const utf8 = new TextDecoder('utf-8', { fatal: true });

let connections = 0;
let delivered = 0;

const app = uWS.App();

app.ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 16 * 1024,
  // Same budget as ringcast's default per-connection send queue; uWS closes a connection
  // whose backpressure exceeds it.
  maxBackpressure: 1024 * 1024,
  idleTimeout: 120,
  sendPingsAutomatically: true,
  upgrade: (res, req, context) => {
    const path = req.getUrl().slice(1);
    if (path !== 'echo' && !CHANNEL.test(path)) {
      res.writeStatus('400 Bad Request').end();
      return;
    }
    res.upgrade(
      { path },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context
    );
  },
  open: (ws) => {
    connections++;
    const path = ws.getUserData().path;
    if (path !== 'echo') ws.subscribe(path);
  },
  message: (ws, message, isBinary) => {
    if (ws.getUserData().path === 'echo') ws.send(message, isBinary);
  },
  close: () => {
    connections--;
  },
});

app.get('/metrics', (res) => {
  res.writeHeader('Content-Type', 'text/plain; version=0.0.4').end(
    `# TYPE uwspeer_connections gauge\nuwspeer_connections ${connections}\n` +
      `# TYPE uwspeer_messages_delivered_total counter\n` +
      `uwspeer_messages_delivered_total ${delivered}\n`
  );
});

app.post('/publish/:channel', (res, req) => {
  const channel = req.getParameter(0);
  const chunks = [];
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
  });
  res.onData((chunk, isLast) => {
    // uWS reuses the chunk's memory after this call: copy it.
    chunks.push(Buffer.from(chunk.slice(0)));
    if (!isLast || aborted) return;
    const body = Buffer.concat(chunks);
    let binary = false;
    try {
      utf8.decode(body);
    } catch {
      binary = true;
    }
    delivered += app.numSubscribers(channel);
    app.publish(channel, body, binary);
    res.cork(() => {
      res.writeStatus('202 Accepted').end();
    });
  });
});

app.any('/*', (res) => {
  res.writeStatus('404 Not Found').end();
});

for (const port of [...listen.ports, admin.ports[0]]) {
  const host = port === admin.ports[0] ? admin.host : listen.host;
  app.listen(host, port, (token) => {
    if (!token) {
      console.error(`uws-peer: cannot listen on ${host}:${port}`);
      process.exit(1);
    }
  });
}

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
