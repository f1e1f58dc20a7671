import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'iovalkey';
import { Metrics } from '../audit/metrics.js';
import { capturingLogger, manualTimer, silentLogger } from '../../test/helpers/fake-registry.js';
import { freePort } from '../../test/helpers/net.js';
import { startRedisServer, type RedisServer } from '../../test/helpers/redis-server.js';
import { Coordinator, KEY_PREFIX, REDIS_COMMAND_TIMEOUT_MS, redactUrl, type Coordinator as C, type Lease } from './coordinator.js';

/** Far beyond REDIS_COMMAND_TIMEOUT_MS: only a hang reaches it. */
const HANG_MS = 20 * REDIS_COMMAND_TIMEOUT_MS;

let server: RedisServer;
let raw: Redis;
const opened: C[] = [];

before(async () => {
  server = await startRedisServer();
  raw = new Redis(server.url);
});
after(async () => {
  await Promise.all(opened.map((c) => c.close()));
  raw.disconnect();
  await server.stop();
});

async function coordinator(opts: Partial<Parameters<typeof Coordinator.connect>[0]> = {}): Promise<C> {
  const c = Coordinator.connect({ url: server.url, logger: silentLogger(), ...opts });
  opened.push(c);
  assert.ok(await c.waitUntilUp(10_000), 'connected');
  return c;
}

function acquired(r: Awaited<ReturnType<C['acquire']>>): Lease {
  assert.equal(r.kind, 'acquired');
  return r.lease;
}

/** `p`, or a failure if it has not settled long after any command timed out. */
function noHang<T>(p: Promise<T>): Promise<T> {
  return Promise.race([p, sleep(HANG_MS, undefined, { ref: false }).then(() => assert.fail(`no answer within ${HANG_MS} ms`))]);
}

test('one process acquires a lease; the others are told it is held and by whom, until it is released', async () => {
  const a = await coordinator();
  const b = await coordinator();
  const lease = acquired(await a.acquire('blob:one', 'https://a.test'));
  assert.deepEqual(await b.acquire('blob:one', 'https://b.test'), { kind: 'held', holder: 'https://a.test' });
  assert.equal(await b.holder('blob:one'), 'https://a.test');
  await lease.release();
  assert.equal(lease.signal.aborted, true, 'a released lease aborts its signal');
  assert.equal(await b.holder('blob:one'), null);
  acquired(await b.acquire('blob:one', 'https://b.test')).release();
});

test('a lease is renewed every third of its TTL, to the whole TTL again', async () => {
  const timer = manualTimer();
  const c = await coordinator({ timer: timer.timer });
  const lease = acquired(await c.acquire('blob:renew', 'me', 60_000));
  assert.deepEqual(timer.armed, [20_000]);
  await raw.pexpire(`${KEY_PREFIX}lease:blob:renew`, 5_000); // most of its TTL has gone by
  timer.fire();
  await waitFor(async () => timer.armed.length === 1); // the next renewal is due
  assert.ok((await raw.pttl(`${KEY_PREFIX}lease:blob:renew`)) > 50_000, 'renewed to its whole TTL');
  assert.equal(lease.signal.aborted, false);
  await lease.release();
});

test('with real timers a renewed lease outlives its TTL', async () => {
  const c = await coordinator();
  const lease = acquired(await c.acquire('blob:outlive', 'me', 900));
  await sleep(2_000);
  assert.equal(lease.signal.aborted, false);
  assert.equal(await c.holder('blob:outlive'), 'me');
  await lease.release();
});

test('a lease taken over by another holder aborts its signal, and its release leaves the new holder\'s lease alone', async () => {
  const timer = manualTimer();
  const c = await coordinator({ timer: timer.timer });
  const lease = acquired(await c.acquire('blob:taken', 'me', 60_000));
  const key = `${KEY_PREFIX}lease:blob:taken`;
  await raw.del(key); // it lapsed…
  await raw.set(key, '999 someone-else', 'PX', 60_000); // …and another process took it
  timer.fire();
  await waitFor(async () => lease.signal.aborted);
  assert.match(String((lease.signal.reason as Error).message), /taken over/);
  assert.deepEqual(timer.armed, [], 'no more renewals');
  await lease.release();
  assert.equal(await raw.get(key), '999 someone-else');
});

test('the same holder acquiring again after its lease lapsed is not mistaken for the old lease', async () => {
  const timer = manualTimer();
  const c = await coordinator({ timer: timer.timer });
  const old = acquired(await c.acquire('blob:again', 'me', 60_000));
  await raw.del(`${KEY_PREFIX}lease:blob:again`); // lapsed
  const fresh = acquired(await c.acquire('blob:again', 'me', 60_000));
  await old.release();
  assert.equal(await c.holder('blob:again'), 'me', 'the old lease\'s release did not delete the new one');
  assert.equal(fresh.signal.aborted, false);
  await fresh.release();
});

test('fencing tokens grow with each acquisition, across processes', async () => {
  const a = await coordinator();
  const b = await coordinator();
  const first = acquired(await a.acquire('janitor', 'a'));
  await first.release();
  const second = acquired(await b.acquire('janitor', 'b'));
  await second.release();
  const third = acquired(await a.acquire('janitor', 'a'));
  await third.release();
  assert.ok(first.fence < second.fence && second.fence < third.fence, `${first.fence} < ${second.fence} < ${third.fence}`);
});

test('JSON values are stored with their TTL; absent or unreadable ones are null', async () => {
  const c = await coordinator();
  assert.equal(await c.setJson('tag:x', { digest: 'sha256:ab', n: 1 }, 30_000), true);
  assert.deepEqual(await c.getJson('tag:x'), { digest: 'sha256:ab', n: 1 });
  const ttl = await raw.pttl(`${KEY_PREFIX}value:tag:x`);
  assert.ok(ttl > 0 && ttl <= 30_000, `ttl ${ttl}`);
  assert.equal(await c.getJson('tag:absent'), null);
  await raw.set(`${KEY_PREFIX}value:tag:bad`, '{not json');
  assert.equal(await c.getJson('tag:bad'), null);
});

test('a lease whose renewals fail for a whole TTL while Redis is down is lost', async () => {
  const own = await startRedisServer();
  const timer = manualTimer();
  let now = 0;
  const c = Coordinator.connect({ url: own.url, logger: silentLogger(), timer: timer.timer, now: () => now });
  try {
    assert.ok(await c.waitUntilUp(10_000));
    const lease = acquired(await c.acquire('blob:down', 'me', 3_000));
    await own.kill();
    now += 1_000;
    timer.fire();
    await waitFor(async () => timer.armed.length === 1);
    assert.equal(lease.signal.aborted, false, 'one failed renewal: the lease may still be ours');
    now += 2_000;
    timer.fire();
    await waitFor(async () => lease.signal.aborted);
    assert.match(String((lease.signal.reason as Error).message), /not renewed within its TTL/);
  } finally {
    await c.close();
    await own.stop();
  }
});

test('while Redis is down every call answers "unavailable" at once; after it restarts they work again; each change is logged once and counted', async () => {
  const own = await startRedisServer();
  const { logger, records } = capturingLogger();
  const metrics = new Metrics({ defaultMetrics: false });
  const d = Coordinator.connect({ url: own.url, logger, metrics });
  try {
    assert.ok(await d.waitUntilUp(10_000));
    await own.kill();
    assert.deepEqual(await noHang(d.acquire('blob:k', 'me')), { kind: 'unavailable' });
    assert.equal(await noHang(d.holder('blob:k')), undefined);
    assert.equal(await noHang(d.getJson('tag:k')), undefined);
    assert.equal(await noHang(d.setJson('tag:k', 1, 1_000)), false);
    assert.equal(d.available, false);
    assert.equal(await noHang(d.getJson('tag:k')), undefined, 'again');

    await own.restart();
    assert.ok(await d.waitUntilUp(10_000), 'reconnected in the background');
    assert.equal(await d.setJson('tag:k', 1, 1_000), true);
    acquired(await d.acquire('blob:k', 'me')).release();

    const up = (await metrics.sharedUp.get()).values.find((v) => v.labels.engine === 'redis');
    const down = (await metrics.sharedUnavailable.get()).values.find((v) => v.labels.engine === 'redis');
    assert.equal(up?.value, 1);
    assert.ok((down?.value ?? 0) >= 1);
    const downs = records.filter((r) => r.msg?.startsWith('redis unavailable'));
    const ups = records.filter((r) => r.msg?.startsWith('redis answering again'));
    assert.equal(ups.length, 1, 'logged once when it came back');
    assert.equal(downs.length, 1, 'logged once per outage');
  } finally {
    await d.close();
    await own.stop();
  }
});

test('a Redis that hangs (connected, answering nothing) costs a call REDIS_COMMAND_TIMEOUT_MS at most; once it answers, calls work again and a lease taken late is given back', async () => {
  const own = await startRedisServer();
  const { logger, records } = capturingLogger();
  const c = Coordinator.connect({ url: own.url, logger });
  try {
    assert.ok(await c.waitUntilUp(10_000));
    own.freeze();
    assert.equal(await noHang(c.getJson('tag:k')), undefined);
    assert.deepEqual(await noHang(c.acquire('blob:k', 'me')), { kind: 'unavailable' });
    assert.equal(c.available, false);
    own.thaw();
    await waitFor(async () => (await c.setJson('tag:k', 1, 1_000)) === true);
    assert.equal(c.available, true);
    assert.equal(await c.holder('blob:k'), null, 'the acquire that ran late was taken back');
    assert.equal(records.filter((r) => r.msg?.startsWith('redis unavailable')).length, 1);
  } finally {
    await c.close();
    await own.stop();
  }
});

test('a Redis that never answered: calls are "unavailable", and its URL is logged without the password', async () => {
  const { logger, records } = capturingLogger();
  const c = Coordinator.connect({ url: `redis://user:s3cret@127.0.0.1:${await freePort()}`, logger });
  try {
    assert.deepEqual(await noHang(c.acquire('blob:k', 'me')), { kind: 'unavailable' });
    await waitFor(async () => records.some((r) => r.msg?.startsWith('redis unavailable')));
    assert.ok(!JSON.stringify(records).includes('s3cret'), 'no password in the logs');
    assert.ok(records.some((r) => r.redis === 'redis://user:REDACTED@127.0.0.1:' + new URL(String(r.redis)).port));
  } finally {
    await c.close();
  }
});

test('a Redis URL is logged without its password', () => {
  assert.equal(redactUrl('redis://user:s3cret@redis.test:6379/0'), 'redis://user:REDACTED@redis.test:6379/0');
  assert.equal(redactUrl('rediss://:s3cret@redis.test'), 'rediss://:REDACTED@redis.test');
  assert.equal(redactUrl('redis://redis.test:6379'), 'redis://redis.test:6379');
  assert.ok(!redactUrl('not a url //u:s3cret@h').includes('s3cret'));
});

/** Polls `cond` until it holds: for what Redis or a renewal does on its own time (bounded by the test timeout). */
async function waitFor(cond: () => Promise<boolean>): Promise<void> {
  while (!(await cond())) await sleep(5);
}
