import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'iovalkey';
import { silentLogger } from '../helpers/fake-registry.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { Coordinator, KEY_PREFIX, SHARED_VALUE_MAX_BYTES } from '../../src/shared/coordinator.js';

// Whoever can write to Redis decides how big a value is, and a Redis that hangs decides how long
// an answer takes. Neither may cost a process more than a bounded read, or a pull more than one
// command timeout per outage.

const HUGE = 8 * 1024 * 1024; // far past any value sigil stores

let server: RedisServer;
let raw: Redis;
before(async () => {
  server = await startRedisServer();
  raw = new Redis(server.url);
});
after(async () => {
  raw.disconnect();
  await server.stop();
});

/** Bytes the server has sent to its clients so far. */
async function sentBytes(): Promise<number> {
  const info = await raw.info('stats');
  return Number(/total_net_output_bytes:(\d+)/.exec(info)?.[1]);
}

test('a huge value planted in Redis is never read into the process (values, lease holders, acquire answers)', async () => {
  const c = Coordinator.connect({ url: server.url, logger: silentLogger() });
  try {
    assert.ok(await c.waitUntilUp(10_000));
    const huge = Buffer.alloc(HUGE, 0x61).toString('latin1');
    await raw.set(`${KEY_PREFIX}value:verdict:x`, huge);
    await raw.set(`${KEY_PREFIX}lease:blob:x`, `nonce ${huge}`);
    const before = await sentBytes();
    assert.equal(await c.getJson('verdict:x'), null, 'too big: taken as absent');
    const holder = await c.holder('blob:x');
    assert.ok(holder !== undefined && (holder === null || holder.length <= SHARED_VALUE_MAX_BYTES), 'a holder is at most SHARED_VALUE_MAX_BYTES');
    const got = await c.acquire('blob:x', 'me');
    assert.equal(got.kind, 'held');
    assert.ok(got.kind === 'held' && got.holder.length <= SHARED_VALUE_MAX_BYTES);
    const sent = (await sentBytes()) - before;
    assert.ok(sent < 4 * SHARED_VALUE_MAX_BYTES, `the server sent ${sent} bytes for three reads`);
  } finally {
    await c.close();
  }
});

test('a value of another type at a key sigil reads is absent, and Redis stays available', async () => {
  const c = Coordinator.connect({ url: server.url, logger: silentLogger() });
  try {
    assert.ok(await c.waitUntilUp(10_000));
    await raw.hset(`${KEY_PREFIX}value:tag:h`, 'a', 'b');
    assert.equal(await c.getJson('tag:h'), null);
    assert.equal(c.available, true);
    assert.equal(await c.setJson('tag:ok', 1, 10_000), true);
  } finally {
    await c.close();
  }
});

test('a Redis that hangs costs one command timeout: later calls answer "unavailable" without sending a command, until it answers again', async () => {
  const own = await startRedisServer();
  const c = Coordinator.connect({ url: own.url, logger: silentLogger() });
  const check = new Redis(own.url);
  try {
    assert.ok(await c.waitUntilUp(10_000));
    own.freeze();
    assert.equal(await c.getJson('tag:first'), undefined, 'timed out');
    // Sent while it still hangs: with a command on the wire, Redis would run it once it thaws.
    assert.equal(await c.setJson('tag:later', 1, 60_000), false);
    own.thaw();
    for (let i = 0; i < 500 && !c.available; i++) {
      await c.getJson('tag:probe');
      await sleep(20);
    }
    assert.equal(c.available, true, 'available again');
    assert.equal(await check.get(`${KEY_PREFIX}value:tag:later`), null, 'no command was sent while Redis hung');
    assert.equal(await c.setJson('tag:after', 1, 60_000), true, 'calls work again once it answers');
  } finally {
    check.disconnect();
    await c.close();
    await own.stop();
  }
});
