import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import { createLogger } from '../../src/audit/logger.js';
import { Metrics } from '../../src/audit/metrics.js';
import type { Registry } from '../../src/oci/registry.js';
import { StoreAdmission } from '../../src/registry/admission.js';
import { serveRegistry, upstreamClient } from '../../src/registry/compose.js';
import { STALE_BREAKER_MS } from '../../src/registry/stale-breaker.js';
import { isSigilError } from '../../src/errors.js';
import type { Digest } from '../../src/oci/digest.js';
import { Catalog } from '../../src/store/catalog.js';
import { ContentStore } from '../../src/store/content-store.js';
import { startFaultServer, type FaultServer } from '../helpers/fault-server.js';
import { tempDir } from '../helpers/temp.js';
import type { LogRecord } from '../helpers/sigil.js';
import { sha256 } from '../helpers/digest.js';

// Guarantees: once a metadata request to an upstream failed in a way stale-if-error covers, the
// requests that have a stored answer get it at once for STALE_BREAKER_MS (marked stale, counted,
// logged once) instead of each waiting for the same failure (up to STALE_DEADLINE_MS on a silent
// upstream); requests with nothing stored still ask the upstream; after the interval one request
// at a time asks it, and once it answers it is asked first again. The upstream is an in-process
// fake (a real registry does not fail on demand) behind the real upstream client, content store
// and catalog; the breaker's clock is injected, so nothing here waits for its interval.
const UP = 'up.test';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const MANIFEST = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: `sha256:${'4'.repeat(64)}`, size: 2 }, layers: [] }));
const DIGEST = sha256(MANIFEST);

type Mode = 'fail' | 'answer' | 'hold';

interface Rig {
  readonly reg: Registry;
  readonly up: FaultServer;
  readonly logs: LogRecord[];
  readonly metrics: Metrics;
  mode: Mode;
  now: number;
  /** Answers held in 'hold' mode. */
  readonly held: ServerResponse[];
}

const cleanup: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

function answer(url: string, res: ServerResponse): void {
  if (url.includes('/tags/list')) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ name: 'app', tags: ['v1', 'fresh'] }));
  } else if (url.includes('/manifests/')) {
    res.writeHead(200, { 'content-type': OCI_MANIFEST, 'docker-content-digest': DIGEST, 'content-length': String(MANIFEST.length) });
    res.end(MANIFEST);
  } else {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ errors: [{ code: 'NAME_UNKNOWN', message: 'no' }] }));
  }
}

/** An upstream `up.test` whose repository `app` has tag v1 → DIGEST stored (and, when asked, referrers of DIGEST). */
async function rig(opts: { storedReferrers?: boolean } = {}): Promise<Rig> {
  const logs: LogRecord[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) logs.push(JSON.parse(line) as LogRecord);
      cb();
    },
  });
  const logger = createLogger('info', sink);
  const metrics = new Metrics({ defaultMetrics: false });
  const state = { mode: 'fail' as Mode, now: 0, held: [] as ServerResponse[] };
  const up = await startFaultServer((req, res) => {
    if (state.mode === 'hold') state.held.push(res);
    else if (state.mode === 'fail') res.writeHead(503).end();
    else answer(req.url ?? '', res);
  });
  cleanup.push(() => up.stop());
  const store = await ContentStore.open({ dir: await tempDir('sigil-stale-breaker-'), maxBytes: 1 << 26 });
  cleanup.push(() => store.close());
  const catalog = new Catalog(store);
  await catalog.putManifest(UP, 'app', DIGEST, OCI_MANIFEST, MANIFEST);
  await catalog.putTag(UP, 'app', 'v1', { digest: DIGEST, mediaType: OCI_MANIFEST });
  if (opts.storedReferrers) await catalog.putReferrers(UP, 'app', DIGEST, []);
  const upstream = { name: UP, aliases: [], url: new URL(up.url), staleIfError: true, verifyBlobDigests: true };
  const reg = serveRegistry(
    upstreamClient(upstream, { metrics, logger }),
    upstream,
    { tags: { ttlMs: 30_000 }, manifests: { maxBytes: 1 << 20 } },
    { metrics, logger, now: () => state.now },
    { content: store, catalog, admission: new StoreAdmission([], { ttlMs: 60_000 }) },
  );
  cleanup.push(() => reg.close());
  return Object.assign(state, { reg, up, logs, metrics });
}

const staleCount = async (m: Metrics): Promise<number> => (await m.staleResponses.get()).values.reduce((n, v) => n + v.value, 0);
const failingLogs = (r: Rig): LogRecord[] => r.logs.filter((l) => /upstream failing/.test(l.msg ?? ''));

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'answered';
  } catch (e) {
    return isSigilError(e) ? e.code : String(e);
  }
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), what);
}

test('after a metadata request failed, stored answers come from the store without asking the upstream again (counted, logged once)', async () => {
  const r = await rig({ storedReferrers: true });
  const first = await r.reg.fetchManifest('app', 'v1');
  assert.equal(first.stale, true);
  assert.equal(first.digest, DIGEST);
  const asked = r.up.requests.length;
  assert.ok(asked >= 1, 'the first lookup asked the upstream');

  const again = await r.reg.fetchManifest('app', 'v1');
  const tags = await r.reg.listTags('app', {});
  const refs = await r.reg.referrers('app', DIGEST);
  assert.equal(again.stale, true);
  assert.deepEqual(again.bytes, MANIFEST);
  assert.equal(tags.stale, true);
  assert.deepEqual(tags.tags, ['v1']);
  assert.equal(refs.kind === 'api' && refs.stale, true);
  assert.equal(r.up.requests.length, asked, `asked again: ${r.up.requests.slice(asked).map((q) => `${q.method} ${q.url}`).join(', ')}`);
  assert.equal(await staleCount(r.metrics), 4);
  assert.equal(failingLogs(r).length, 1, JSON.stringify(failingLogs(r)));
});

test('a request with nothing stored still asks the failing upstream: its failure is the answer', async () => {
  const r = await rig();
  assert.equal((await r.reg.fetchManifest('app', 'v1')).stale, true);
  let asked = r.up.requests.length;
  assert.equal(await code(r.reg.fetchManifest('app', 'v2')), 'UPSTREAM_BAD_RESPONSE');
  assert.ok(r.up.requests.length > asked, 'the tag that is not stored was asked of the upstream');
  // No referrers stored, nor the referrers tag: the referrers request asks the upstream too.
  asked = r.up.requests.length;
  assert.equal(await code(r.reg.referrers('app', DIGEST)), 'UPSTREAM_BAD_RESPONSE');
  assert.ok(r.up.requests.length > asked, 'the referrers that are not stored were asked of the upstream');
  // Its answer, once it gives one, is served.
  r.mode = 'answer';
  const fresh = await r.reg.fetchManifest('app', 'fresh');
  assert.equal(fresh.stale, undefined);
  assert.equal(fresh.digest, DIGEST);
});

test('after the interval one request at a time asks the upstream; meanwhile the others get the stored answer', async () => {
  const r = await rig();
  assert.equal((await r.reg.fetchManifest('app', 'v1')).stale, true);
  r.now += STALE_BREAKER_MS - 1;
  let asked = r.up.requests.length;
  assert.equal((await r.reg.listTags('app', {})).stale, true);
  assert.equal(r.up.requests.length, asked, 'within the interval the upstream is not asked');

  r.now += 1;
  r.mode = 'hold';
  asked = r.up.requests.length;
  const probe = r.reg.fetchManifest('app', 'v1');
  await until(() => r.held.length === 1, 'the probe asked the upstream');
  // While the probe waits for the upstream, the others are answered from the store at once.
  const during = await Promise.all([r.reg.fetchManifest('app', 'v1'), r.reg.listTags('app', {}), r.reg.fetchManifest('app', 'v1')]);
  for (const d of during) assert.equal(d.stale, true);
  assert.equal(r.up.requests.length, asked + 1, `more than the probe asked: ${r.up.requests.slice(asked).map((q) => q.url).join(', ')}`);
  // The probe fails: the stored answer, and the interval starts again.
  r.held.shift()!.writeHead(503).end();
  assert.equal((await probe).stale, true);
  r.mode = 'answer';
  asked = r.up.requests.length;
  assert.equal((await r.reg.listTags('app', {})).stale, true);
  assert.equal(r.up.requests.length, asked, 'a failed probe starts the interval again');
  assert.equal(failingLogs(r).length, 1, 'logged when it started failing, not per request or per probe');
});

test('once the upstream answers again, it is asked first again', async () => {
  const r = await rig();
  assert.equal((await r.reg.listTags('app', {})).stale, true);
  r.now += STALE_BREAKER_MS;
  r.mode = 'answer';
  const probed = await r.reg.listTags('app', {});
  assert.equal(probed.stale, undefined);
  assert.deepEqual(probed.tags, ['v1', 'fresh']);
  const asked = r.up.requests.length;
  const next = await r.reg.fetchManifest('app', 'v1');
  assert.equal(next.stale, undefined);
  assert.ok(r.up.requests.length > asked, 'the tag was asked of the upstream');
  assert.equal(r.logs.filter((l) => /upstream answering again/.test(l.msg ?? '')).length, 1);
  // A failure again: stored answers at once again.
  r.mode = 'fail';
  assert.equal(await code(r.reg.fetchManifest('app', 'v2')), 'UPSTREAM_BAD_RESPONSE');
  const stored = r.up.requests.length;
  assert.equal((await r.reg.listTags('app', {})).stale, true);
  assert.equal(r.up.requests.length, stored);
  assert.equal(failingLogs(r).length, 2);
});
