import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/** The benchmark's vendor: a tiny JSON answer on 127.0.0.1, in its own process. Prints its port. */
const body = JSON.stringify({ ok: true, items: [{ sku: 'A1', qty: 3 }] });
const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
