// Node.js `ws` baseline server for tests/bench/compare.sh, written the way the ws README
// shows it (one WebSocketServer, `client.send(data)` to every subscriber of a channel),
// with the same external interface as ringcast:
//   ws://HOST:PORT/<channel>  subscribes to <channel>; ws://HOST:PORT/echo echoes;
//   POST /publish/<channel> on the admin port publishes the body (text if valid UTF-8);
//   GET /metrics: nodepeer_connections, nodepeer_messages_delivered_total.
// Usage: node server.js --listen 127.0.0.1:12000-12003 --admin 127.0.0.1:9290
'use strict';

const http = require('http');
const { WebSocketServer } = require('ws');
const { arg, parseListen, CHANNEL } = require('../peer-args.js');

const listen = parseListen(arg('--listen', '127.0.0.1:12000'));
const admin = parseListen(arg('--admin', '127.0.0.1:9290'));

const channels = new Map(); // name -> Set of sockets
let connections = 0;
let delivered = 0;

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

function onUpgrade(request, socket, head) {
  const path = request.url.split('?')[0].slice(1);
  if (path !== 'echo' && !CHANNEL.test(path)) {
    socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(request, socket, head, (ws) => {
    connections++;
    if (path === 'echo') {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    } else {
      let set = channels.get(path);
      if (!set) {
        set = new Set();
        channels.set(path, set);
      }
      set.add(ws);
      ws.on('close', () => {
        set.delete(ws);
        if (set.size === 0 && channels.get(path) === set) channels.delete(path);
      });
    }
    ws.on('close', () => {
      connections--;
    });
    ws.on('error', () => {});
  });
}

for (const port of listen.ports) {
  const server = http.createServer((req, res) => {
    res.writeHead(426);
    res.end();
  });
  server.on('upgrade', onUpgrade);
  server.listen({ host: listen.host, port, backlog: 4096 });
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

const adminServer = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/metrics') {
    res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4' });
    res.end(
      `# TYPE nodepeer_connections gauge\nnodepeer_connections ${connections}\n` +
        `# TYPE nodepeer_messages_delivered_total counter\n` +
        `nodepeer_messages_delivered_total ${delivered}\n`
    );
    return;
  }
  const match = req.method === 'POST' && /^\/publish\/([^/?]+)$/.exec(req.url);
  if (!match) {
    res.writeHead(404);
    res.end();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    let binary = false;
    try {
      utf8.decode(body);
    } catch {
      binary = true;
    }
    const set = channels.get(match[1]);
    if (set) {
      for (const ws of set) {
        ws.send(body, { binary });
        delivered++;
      }
    }
    res.writeHead(202, { 'Content-Length': 0 });
    res.end();
  });
});
adminServer.listen({ host: admin.host, port: admin.ports[0] });

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
