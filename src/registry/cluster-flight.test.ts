import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, afterEach, before, test } from 'node:test';
import { Redis } from 'iovalkey';
import { Metrics } from '../audit/metrics.js';
import type { Digest } from '../oci/digest.js';
import { Coordinator } from '../shared/coordinator.js';
import type { Timer } from '../shared/lease.js';
import { signHolder } from '../shared/peer-auth.js';
import { PeerClient } from '../shared/peer-client.js';
import { PeerServer } from '../shared/peer-server.js';
import { UpstreamClient } from '../upstream/client.js';
import { collect, manualTimer, sha256, silentLogger } from '../../test/helpers/fake-registry.js';
import { startFaultServer, type FaultServer } from '../../test/helpers/fault-server.js';
import { startRecordingServer } from '../../test/helpers/fault-server.js';
import { startRedisServer, type RedisServer } from '../../test/helpers/redis-server.js';
import { tempStore } from '../../test/helpers/temp-store.js';
import { StoreAdmission } from './admission.js';
import { COMMIT_WAIT_MS, ClusterFlight, HOLD_AFTER_COMMIT_MS, PEER_ABSENT_RETRIES, blobLeaseKey, type FlightOutcome } from './cluster-flight.js';
import { WriteThrough } from './write-through.js';

const token = 'peer-token-0123456789abcdef';
const UPSTREAM = 'test-upstream';
const GET = { method: 'GET' } as const;

/** A gate a test opens with a value. */
function gate<T = void>(): { p: Promise<T>; open(v: T): void } {
  let open!: (v: T) => void;
  const p = new Promise<T>((r) => (open = r));
  return { p, open };
}

/** Waits (bounded) until `check` holds: for the other side of a socket, not for a deadline. */
async function until(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 5000; i++) {
    if (await check()) return;
    await sleep(2);
  }
  assert.fail(`never: ${what}`);
}

/** A registry serving blobs by digest, with Range; a first GET of a blob can be held part-way. */
class Upstream {
  readonly blobs = new Map<string, Buffer>();
  readonly #stalls = new Map<string, { split: number; headers: Promise<void>; sent: () => void; rest: Promise<'end' | 'cut'> }>();
  /** Answers a Range with the whole blob (200), as registries without range support do. */
  ignoreRange = false;
  /** Range answers wait for this gate while set. */
  holdRanges: Promise<void> | undefined;
  server!: FaultServer;

  async start(): Promise<void> {
    this.server = await startFaultServer((req, res) => this.#answer(req, res));
  }

  blob(size: number): { bytes: Buffer; digest: Digest } {
    const bytes = randomBytes(size);
    const digest = sha256(bytes);
    this.blobs.set(digest, bytes);
    return { bytes, digest };
  }

  /** The next GET of `digest` sends `split` bytes and waits for `rest` (its headers for `headers` when given). */
  stall(digest: Digest, split: number, headers?: Promise<void>) {
    const sent = gate();
    const rest = gate<'end' | 'cut'>();
    this.#stalls.set(digest, { split, headers: headers ?? Promise.resolve(), sent: () => sent.open(), rest: rest.p });
    return { sent: sent.p, finish: () => rest.open('end'), cut: () => rest.open('cut') };
  }

  gets(digest: Digest): Array<string | undefined> {
    return this.server.requests.filter((r) => r.method === 'GET' && r.url.endsWith(digest)).map((r) => r.headers.range as string | undefined);
  }

  async #answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const m = /^\/v2\/.+\/blobs\/(sha256:[0-9a-f]{64})$/.exec(req.url ?? '');
    const bytes = m ? this.blobs.get(m[1]!) : undefined;
    if (!m || !bytes) {
      res.writeHead(404, { 'content-type': 'application/json' });
      return void res.end('{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}');
    }
    const r = this.ignoreRange ? null : /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ''));
    if (r) {
      await this.holdRanges;
      const from = Number(r[1]);
      res.writeHead(206, { 'content-length': String(bytes.length - from), 'content-range': `bytes ${from}-${bytes.length - 1}/${bytes.length}` });
      return void res.end(req.method === 'HEAD' ? undefined : bytes.subarray(from));
    }
    const stall = req.method === 'GET' ? this.#stalls.get(m[1]!) : undefined;
    this.#stalls.delete(m[1]!);
    await stall?.headers;
    res.writeHead(200, { 'content-length': String(bytes.length), 'content-type': 'application/octet-stream' });
    if (req.method === 'HEAD') return void res.end();
    if (!stall) return void res.end(bytes);
    res.write(bytes.subarray(0, stall.split));
    stall.sent();
    if ((await stall.rest) === 'cut') res.destroy();
    else res.end(bytes.subarray(stall.split));
  }
}

let redis: RedisServer;
let raw: Redis;
const up = new Upstream();
const closing: Array<() => Promise<unknown>> = [];
before(async () => {
  redis = await startRedisServer();
  raw = new Redis(redis.url);
  await up.start();
});
afterEach(async () => {
  for (const close of closing.splice(0).reverse()) await close();
  await raw.flushall().catch(() => {});
});
after(async () => {
  raw.disconnect();
  await up.server.stop();
  await redis.stop();
});

/** A coordinator on the test's Redis, connected (closed after the test). */
async function coordinator(): Promise<Coordinator> {
  const c = Coordinator.connect({ url: redis.url, logger: silentLogger() });
  closing.push(() => c.close());
  await until(() => c.available, 'the coordinator is connected');
  return c;
}

/** One replica: its own store, peer listener, coordinator and stack (upstream → cluster flight → write-through). */
async function replica(opts: { timer?: Timer } = {}) {
  const logger = silentLogger();
  const store = await tempStore();
  const metrics = new Metrics({ defaultMetrics: false });
  const server = new PeerServer({ peer: { listen: { host: '127.0.0.1', port: 0 }, advertise: 'http://127.0.0.1:1', token }, content: store.content, logger });
  const { port } = await server.listen();
  const advertise = `http://127.0.0.1:${port}`;
  const leases = await coordinator();
  const peers = new PeerClient({ token });
  const client = new UpstreamClient({ name: UPSTREAM, aliases: [], url: new URL(up.server.url), staleIfError: false, verifyBlobDigests: true }, { metrics, logger });
  const flight = new ClusterFlight(client, { leases, peers, peer: { advertise, token }, content: store.content, logger, metrics, timer: opts.timer });
  const registry = new WriteThrough(flight, { store, admission: new StoreAdmission([], { ttlMs: 60_000 }), logger });
  closing.push(
    () => store.close(),
    () => client.close(),
    () => peers.close(),
    () => server.close(),
  );
  return {
    store,
    server,
    advertise,
    coordinator: leases,
    flight,
    pull: async (d: Digest): Promise<Buffer> => collect((await registry.openBlob('app', d, GET)).body),
    open: async (d: Digest): Promise<Readable> => (await registry.openBlob('app', d, GET)).body!,
    async outcomes(): Promise<Partial<Record<FlightOutcome, number>>> {
      const m = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === 'sigil_shared_blob_flights_total');
      return Object.fromEntries((m?.values ?? []).map((v) => [v.labels.outcome, v.value]));
    },
  };
}

test('replicas pulling one blob at once fetch it from the upstream once: the others stream it from the lease holder as it arrives', async () => {
  const [a, b] = [await replica(), await replica()];
  const { bytes, digest } = up.blob(300 * 1024);
  const stall = up.stall(digest, 100 * 1024);
  const pulledA = a.pull(digest);
  await stall.sent;
  await until(() => a.store.content.writesInFlight === 1, 'the holder writes');
  const pulledB = b.pull(digest);
  await until(() => b.store.content.writesInFlight === 1, 'the follower writes what it streams from the holder');
  stall.finish();
  assert.deepEqual(await pulledA, bytes);
  assert.deepEqual(await pulledB, bytes);
  assert.deepEqual(up.gets(digest), [undefined], 'one GET upstream');
  await until(() => b.store.content.has(digest), 'the follower stored it');
  assert.deepEqual([await a.outcomes(), await b.outcomes()], [{ fetched: 1 }, { peer: 1 }]);
  const key = blobLeaseKey(UPSTREAM, 'app', digest);
  assert.equal(await a.coordinator.holder(key), signHolder(token, key, a.advertise), 'held on after the commit (HOLD_AFTER_COMMIT_MS)');
});

test('a replica asking after the holder committed streams the stored blob from it, not from the upstream', async () => {
  const [a, c] = [await replica(), await replica()];
  const { bytes, digest } = up.blob(200 * 1024);
  assert.deepEqual(await a.pull(digest), bytes);
  await until(() => a.store.content.has(digest), 'the holder stored it');
  assert.deepEqual(await c.pull(digest), bytes);
  assert.deepEqual(up.gets(digest), [undefined], 'one GET upstream in all');
  assert.deepEqual(await c.outcomes(), { peer: 1 });
});

test('the holder keeps its lease until its store committed the blob; one whose store refused it frees it after COMMIT_WAIT_MS', async () => {
  const clock = manualTimer();
  const a = await replica({ timer: clock.timer });
  const good = up.blob(4096);
  const key = (d: Digest): string => blobLeaseKey(UPSTREAM, 'app', d);
  assert.deepEqual(await a.pull(good.digest), good.bytes);
  await until(() => clock.armed.length === 1 && clock.armed[0] === HOLD_AFTER_COMMIT_MS, 'by the commit: COMMIT_WAIT_MS cancelled, HOLD_AFTER_COMMIT_MS armed');
  assert.notEqual(await a.coordinator.holder(key(good.digest)), null, 'held on after the commit');
  clock.fire();
  await until(async () => (await a.coordinator.holder(key(good.digest))) === null, 'released HOLD_AFTER_COMMIT_MS after the commit');

  const liar = up.blob(4096);
  up.blobs.set(liar.digest, randomBytes(4096)); // the upstream sends other bytes: the store never commits them
  await assert.rejects(a.pull(liar.digest));
  assert.equal(await a.store.content.has(liar.digest), false);
  assert.notEqual(await a.coordinator.holder(key(liar.digest)), null, 'held while a commit may come');
  assert.deepEqual(clock.armed, [COMMIT_WAIT_MS]);
  clock.fire();
  await until(async () => (await a.coordinator.holder(key(liar.digest))) === null, 'released after COMMIT_WAIT_MS');
});

/**
 * Replica A holds a blob's lease while its upstream has not answered; replica B asks A for it and
 * finds it not writing yet. A's upstream answers at B's `answerAtWait`-th wait between asks. B's
 * client gets the blob; what it asked the upstream and how often it waited is returned.
 */
async function followSlowHolder(answerAtWait: number) {
  const headers = gate();
  let waits = 0;
  let a!: Awaited<ReturnType<typeof replica>>;
  const b = await replica({
    timer: (_ms, fire) => {
      if (++waits === answerAtWait) {
        headers.open(); // the holder's upstream answers now: its write begins
        void until(() => a.store.content.writesInFlight === 1, 'the holder writes').then(fire);
      } else setImmediate(fire); // still holding its lease, not writing yet
      return () => {};
    },
  });
  a = await replica();
  const { bytes, digest } = up.blob(64 * 1024);
  const stall = up.stall(digest, 1024, headers.p);
  const pulledA = a.pull(digest);
  await until(() => up.gets(digest).length === 1, 'the holder asked the upstream');
  const pulledB = b.pull(digest);
  await until(() => b.store.content.writesInFlight === 1, 'the follower streams from the holder');
  stall.finish();
  assert.deepEqual([await pulledA, await pulledB], [bytes, bytes]);
  return { waits, upstreamGets: up.gets(digest).length, outcomes: await b.outcomes() };
}

test('a follower that finds the holder not writing yet asks it again, then streams from it', async () => {
  assert.deepEqual(await followSlowHolder(1), { waits: 1, upstreamGets: 1, outcomes: { peer: 1 } });
});

test(`a holder slower to answer than PEER_ABSENT_RETRIES (${PEER_ABSENT_RETRIES}) waits but still holding the lease is waited for, not duplicated upstream`, async () => {
  assert.deepEqual(await followSlowHolder(2 * PEER_ABSENT_RETRIES), { waits: 2 * PEER_ABSENT_RETRIES, upstreamGets: 1, outcomes: { peer: 1 } });
});

/**
 * Replica A downloading a 300 KiB blob (its upstream held after 100 KiB), replica B streaming it
 * from A and its client having had a first part of it.
 */
async function followingAHolder() {
  const [a, b] = [await replica(), await replica()];
  const { bytes, digest } = up.blob(300 * 1024);
  const stall = up.stall(digest, 100 * 1024);
  const pulledA = a.pull(digest).catch((err: unknown) => err);
  await stall.sent;
  await until(() => a.store.content.writesInFlight === 1, 'the holder writes');
  const body = await b.open(digest);
  const it = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const first = await it.next(); // some of it came from the holder
  assert.equal(first.done, false);
  return { a, b, bytes, digest, stall, pulledA, it, first: first.value as Buffer };
}

test('when the holder dies mid-stream the follower takes the lease and gets the rest from the upstream with a Range', async () => {
  const { a, b, bytes, digest, stall, pulledA, it, first } = await followingAHolder();
  const ranges = gate();
  up.holdRanges = ranges.p;
  await raw.flushall(); // the holder's lease lapsed (it died: nobody renews it)
  await a.server.close(); // and its peer listener is gone: the follower's stream is cut
  await until(() => up.gets(digest).length === 2, 'the follower asked the upstream for the rest');
  const [, range] = up.gets(digest);
  assert.match(range ?? '', /^bytes=[1-9]\d*-$/, 'from where the holder\'s stream stopped');
  const key = blobLeaseKey(UPSTREAM, 'app', digest);
  assert.equal(await b.coordinator.holder(key), signHolder(token, key, b.advertise), 'the follower holds the lease now');
  ranges.open();
  up.holdRanges = undefined;
  const rest: Buffer[] = [];
  for (let r = await it.next(); !r.done; r = await it.next()) rest.push(r.value);
  assert.deepEqual(Buffer.concat([first, ...rest]), bytes);
  await until(() => b.store.content.has(digest), 'the follower stored it');
  assert.deepEqual(await b.outcomes(), { peer: 1, taken_over: 1 });
  stall.cut();
  assert.ok(await pulledA instanceof Error, 'the holder\'s own download failed with its upstream');
});

test('when the holder dies mid-stream and the upstream cannot answer a Range, the download fails: never a short or spliced blob', async () => {
  const { a, b, digest, stall, pulledA, it } = await followingAHolder();
  up.ignoreRange = true;
  try {
    await a.server.close();
    await assert.rejects(async () => {
      for (let r = await it.next(); !r.done; r = await it.next());
    }, /Range|206|answered 200/);
  } finally {
    up.ignoreRange = false;
  }
  await until(() => b.store.content.writesInFlight === 0, 'the follower\'s write is over');
  assert.equal(await b.store.content.has(digest), false, 'nothing stored');
  stall.cut();
  await pulledA;
});

test('a lease value whose MAC does not check is ignored and counted: its address is never contacted', async () => {
  const b = await replica();
  const trap = await startRecordingServer();
  closing.push(() => trap.stop());
  const rogue = await coordinator();
  const forged: Array<(key: string) => string> = [
    () => `${trap.url} ${'0'.repeat(64)}`, // no signature
    (key) => signHolder('another-token-0123456789', key, trap.url), // signed with another token
    () => signHolder(token, 'blob:other', trap.url), // signed for another lease
  ];
  for (const forge of forged) {
    const { bytes, digest } = up.blob(10 * 1024);
    const key = blobLeaseKey(UPSTREAM, 'app', digest);
    const held = await rogue.acquire(key, forge(key));
    assert.equal(held.kind, 'acquired');
    assert.deepEqual(await b.pull(digest), bytes);
    if (held.kind === 'acquired') await held.lease.release();
  }
  assert.equal(trap.requests.length, 0);
  assert.deepEqual(await b.outcomes(), { bad_mac: 3 });
});

test('a lease this replica holds under its own address is not followed: the blob is fetched as without peers', async () => {
  const b = await replica();
  const { bytes, digest } = up.blob(4096);
  const key = blobLeaseKey(UPSTREAM, 'app', digest);
  const other = await coordinator();
  assert.equal((await other.acquire(key, signHolder(token, key, b.advertise))).kind, 'acquired');
  assert.deepEqual(await b.pull(digest), bytes);
  assert.deepEqual(await b.outcomes(), { own: 1 });
});

test('HEADs, ranges and blobs not going into the store pass below without a lease', async () => {
  const b = await replica();
  const { bytes, digest } = up.blob(4096);
  assert.equal((await b.flight.openBlob('app', digest, { method: 'HEAD' })).status, 200);
  assert.deepEqual(await collect((await b.flight.openBlob('app', digest, { method: 'GET', range: 'bytes=96-', verifyDigest: false })).body), bytes.subarray(96));
  assert.deepEqual(await collect((await b.flight.openBlob('app', digest, GET)).body), bytes, 'checked by the upstream client, not stored');
  assert.deepEqual(await b.outcomes(), {});
  assert.equal(await b.coordinator.holder(blobLeaseKey(UPSTREAM, 'app', digest)), null);
});

test('with Redis down a replica fetches from the upstream as a single process would', async () => {
  const b = await replica();
  const { bytes, digest } = up.blob(4096);
  await redis.kill();
  try {
    assert.deepEqual(await b.pull(digest), bytes);
    assert.deepEqual(await b.outcomes(), { alone: 1 });
  } finally {
    await redis.restart();
  }
});
