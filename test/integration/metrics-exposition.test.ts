import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { NON_CONFORMING_DEFAULT_METRICS } from '../../src/audit/metrics.js';
import { pushLegacySignature } from '../helpers/publish.js';
import { checkExposition, findPromtool, parseExposition, promtool, type Family } from '../helpers/prometheus-text.js';
import { legacyLayer } from '../helpers/signer.js';
import { tempDir } from '../helpers/temp.js';
import { startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';
import type { SigilHandle } from '../helpers/sigil.js';

// The whole of GET /metrics from a sigil with a content store that has served verified, denied
// and warned pulls passes `promtool check metrics` (run when promtool is on the PATH, else the
// strict check of test/helpers/prometheus-text.ts), prom-client's defaults included, under their
// standard names; and it says what the contract says it says.

const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';
const MAX_BYTES = 1 << 30;
let env: VerifyEnv;
let sigil: SigilHandle;

before(async () => {
  env = await startVerifyEnv();
  const storeDir = await tempDir('sigil-metrics-store-');
  sigil = await env.sigil(
    `
  - name: prod
    match: ["reg.test/prod/**"]
    mode: enforce
    authorities:
      - { key: ${env.keys.p256.path}, tlog: ignore }
  - name: rollout
    match: ["**"]
    mode: warn
    authorities:
      - { key: ${env.keys.p256.path}, tlog: ignore }`,
    { extra: `cache:\n  store:\n    dir: ${storeDir}\n    maxBytes: ${MAX_BYTES}` },
  );
});
after(async () => {
  await env?.stop();
});

const get = async (path: string): Promise<{ status: number; text: string }> => {
  const res = await request(`${sigil.url}${path}`, { headers: { accept: ACCEPT } });
  return { status: res.statusCode, text: await res.body.text() };
};
const scrape = async (): Promise<Map<string, Family>> => {
  const r = await get('/metrics');
  assert.equal(r.status, 200);
  return parseExposition(r.text).families;
};
const sampleOf = (families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined =>
  families
    .get(name)
    ?.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;

test('after verified, denied and warned pulls through the store, the whole of /metrics passes the format and naming checks', async (t) => {
  const signed = await env.push('prod/app', 'v1');
  await pushLegacySignature(env.target, 'prod/app', signed.digest, [legacyLayer(env.keys.p256, signed.digest)]);
  await env.push('prod/unsigned', 'v1');
  await env.push('lab/tool', 'v1');
  assert.equal((await get('/v2/prod/app/manifests/v1')).status, 200);
  assert.equal((await get(`/v2/prod/app/blobs/${signed.layers[0].digest}`)).status, 200);
  assert.equal((await get('/v2/prod/unsigned/manifests/v1')).status, 403);
  assert.equal((await get('/v2/lab/tool/manifests/v1')).status, 200);
  assert.equal((await get('/v2/nowhere/x/manifests/v1')).status, 404);

  const text = (await get('/metrics')).text;
  assert.deepEqual(checkExposition(text), []);
  const path = findPromtool();
  if (path) assert.deepEqual(await promtool(path, ['check', 'metrics'], text), { code: 0, output: '' });
  else t.diagnostic('promtool is not on the PATH: checked by the exposition parser alone');
});

test('prom-client\'s defaults under the standard process_* and nodejs_* names, none of them renamed, none that breaks the naming rules', async () => {
  const families = await scrape();
  for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'process_open_fds', 'process_max_fds', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_gc_duration_seconds']) {
    assert.ok(families.has(name), name);
  }
  assert.ok(![...families.keys()].some((n) => n.startsWith('sigil_process_')));
  for (const name of NON_CONFORMING_DEFAULT_METRICS) assert.ok(!families.has(name), name);
});

test('sigil_build_info{version,node} is 1, with the package\'s version and the Node.js that runs it', async () => {
  const { version } = JSON.parse(await readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  const info = (await scrape()).get('sigil_build_info');
  assert.equal(info?.type, 'gauge');
  assert.deepEqual(info?.samples, [{ name: 'sigil_build_info', labels: { version, node: process.version }, value: 1 }]);
});

test('the store\'s gauges and counters: filled through by a pull, within its limit, writable', async () => {
  const img = await env.push('lab/cached', 'v1', { layerSize: 5000 });
  assert.equal((await get('/v2/lab/cached/manifests/v1')).status, 200);
  assert.equal((await get(`/v2/lab/cached/blobs/${img.layers[0].digest}`)).status, 200);
  const f = await scrape();
  assert.ok((sampleOf(f, 'sigil_store_lookups_total', { kind: 'blob', result: 'miss' }) ?? 0) >= 1, 'the layer\'s first read is a miss');
  assert.equal(sampleOf(f, 'sigil_store_max_bytes'), MAX_BYTES);
  assert.equal(sampleOf(f, 'sigil_store_writable'), 1);
  assert.equal(sampleOf(f, 'sigil_store_evictions_total'), 0, 'far below the limit');
  assert.ok((sampleOf(f, 'sigil_store_objects') ?? 0) >= 1, 'the manifests kept');
  // nothing evicted or removed: all the store holds is what filled it (a write still committing counts in neither)
  assert.equal(sampleOf(f, 'sigil_store_fill_bytes_total'), sampleOf(f, 'sigil_store_bytes'));
});
