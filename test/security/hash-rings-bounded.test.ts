import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Agent, request } from 'undici';
import type { Dispatcher } from 'undici';
import { HashPool, RINGS_IN_FLIGHT_MAX } from '../../src/hash/hash-pool.js';
import { RING_BYTES } from '../../src/hash/ring.js';
import { startFaultServer } from '../helpers/fault-server.js';
import { startSigil, simpleConfig } from '../helpers/sigil.js';

// Guards: every off-thread stream takes a RING_BYTES (2 MiB) SharedArrayBuffer
// for its whole life, and nothing bounds how many are in flight (FREE_RINGS_MAX only bounds
// the rings kept idle). A client that reads a big uncached blob slowly (past the first
// 2 MiB, then a trickle to keep the upstream's body alive) pins 2 MiB per connection, where
// the inline hash pinned ~100 bytes of hash state: N slow connections = N x 2 MiB of memory.

const STREAMS = 128;
/** Through the proxy: enough slow clients to pass the bound (each one moves ~2.3 MiB through sigil). */
const SLOW_CLIENTS = RINGS_IN_FLIGHT_MAX + 8;
const MiB = 1024 * 1024;

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

test('concurrent off-thread streams do not each pin a 2 MiB ring without bound (HashPool)', async () => {
  const p = new HashPool({ size: 1 });
  cleanups.push(() => p.close());
  const chunk = Buffer.alloc(64 * 1024, 1);
  const before = process.memoryUsage().arrayBuffers;
  const hashes = Array.from({ length: STREAMS }, () => p.start('sha256'));
  for (const h of hashes) {
    for (let off = 0; off < RING_BYTES; off += chunk.length) {
      const room = h.update(chunk);
      if (room !== undefined) await room;
    }
  }
  const grown = process.memoryUsage().arrayBuffers - before;
  for (const h of hashes) h.abort();
  assert.ok(grown < (STREAMS * RING_BYTES) / 2, `${STREAMS} streams in flight hold ${(grown / MiB).toFixed(0)} MiB of hash rings`);
});

test('slow clients of a big uncached blob pin at most RINGS_IN_FLIGHT_MAX hash rings; the rest hash inline (through the proxy)', async () => {
  const blob = Buffer.alloc(64 * MiB, 7); // more than the loopback socket buffers hold: the streams stay open
  const up = await startFaultServer((_req, res) => {
    // chunked, no Content-Length: the hash cannot be sized, it goes off-thread
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end(blob);
  });
  const sigil = await startSigil(simpleConfig([{ name: 'up.test', url: up.url }]));
  const agent = new Agent({ connections: SLOW_CLIENTS + 8 });
  cleanups.push(() => up.stop(), () => sigil.stop(), () => agent.close());
  const digest = `sha256:${'1'.repeat(64)}`;
  const before = process.memoryUsage().arrayBuffers;
  const bodies: Dispatcher.ResponseData['body'][] = [];
  await Promise.all(
    Array.from({ length: SLOW_CLIENTS }, async () => {
      const res = await request(`${sigil.url}/v2/up.test/a/b/blobs/${digest}`, { dispatcher: agent });
      assert.equal(res.statusCode, 200);
      bodies.push(res.body);
      // read a little more than one ring, then stop reading (a slow client)
      await new Promise<void>((resolve, reject) => {
        let got = 0;
        res.body.on('data', (c: Buffer) => {
          got += c.length;
          if (got > RING_BYTES + 256 * 1024) {
            res.body.pause();
            resolve();
          }
        });
        res.body.once('error', reject);
      });
    }),
  );
  const grown = process.memoryUsage().arrayBuffers - before;
  const inFlight = sigil.hashes.load().reduce((a, b) => a + b, 0);
  for (const b of bodies) b.destroy();
  // Counted in rings (the pool's own gauge), not in total memory: the paused sockets' buffers vary.
  // The streams past the bound hash inline (~100 bytes of state each).
  assert.ok(
    inFlight <= RINGS_IN_FLIGHT_MAX,
    `${SLOW_CLIENTS} paused clients hold ${inFlight} hash rings (${(inFlight * RING_BYTES) / MiB} MiB; array buffers +${(grown / MiB).toFixed(0)} MiB)`,
  );
});
