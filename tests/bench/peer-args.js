// Command-line parsing the Node.js peers of tests/bench/compare.sh share
// (node-peer/server.js, uws-peer/server.js): `--name value` flags and
// `HOST:PORT[-LAST]` listen ranges, the same syntax as ringcast's --listen.
'use strict';

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

function parseListen(spec) {
  const colon = spec.lastIndexOf(':');
  const host = spec.slice(0, colon);
  const [first, last] = spec.slice(colon + 1).split('-').map(Number);
  const ports = [];
  for (let p = first; p <= (last || first); p++) ports.push(p);
  return { host, ports };
}

// Channel names ringcast accepts.
const CHANNEL = /^[A-Za-z0-9_.:-]{1,255}$/;

module.exports = { arg, parseListen, CHANNEL };
