// Reloading the config of a running sigil (what SIGHUP and a changed file do): a config that does
// not validate is refused and the running one keeps serving, visibly; under load, every request
// is answered, each under exactly one generation's policy.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { MAX_CONFIG_FILE_BYTES } from '../../src/config/read-file.js';
import { sha256 } from '../helpers/digest.js';
import { startFaultServer } from '../helpers/fault-server.js';
import { pushLegacySignature } from '../helpers/publish.js';
import { legacyLayer } from '../helpers/signer.js';
import { simpleConfig, startSigil, type SigilHandle } from '../helpers/sigil.js';
import { tempDir } from '../helpers/temp.js';
import { pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

let env: VerifyEnv;
let dir: string;
let allowKey: string;
let denyKey: string;

before(async () => {
  env = await startVerifyEnv();
  dir = await tempDir('sigil-reload-');
  allowKey = join(dir, 'allow.pub');
  denyKey = join(dir, 'deny.pub');
  await writeFile(allowKey, env.keys.p256.publicPem);
  await writeFile(denyKey, env.stranger.publicPem);
});
after(async () => {
  await env?.stop();
});

const prod = (keyPath: string) => `
  - name: prod
    match: ["**"]
    mode: enforce
    authorities:
      - { key: ${keyPath}, tlog: ignore }`;

async function json(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await request(url);
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

async function metric(s: SigilHandle, sample: string): Promise<number | undefined> {
  const text = await (await request(`${s.url}/metrics`)).body.text();
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? undefined : Number(line.slice(sample.length + 1));
}

test('a config that does not validate is refused: the running one keeps serving; the log, /readyz and /metrics say so', async () => {
  const img = await env.push('reload/bad', 'v1');
  await pushLegacySignature(env.target, 'reload/bad', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
  const s = await env.sigil(prod(allowKey));
  assert.equal((await pull(s, 'reload/bad', 'v1')).status, 200);

  const broken = env.config(prod(join(dir, 'missing.pub'))).replace('policies:', 'polices: []\npolicies:');
  const outcome = await s.reload(broken);
  assert.equal(outcome.ok, false);
  const problems = outcome.ok ? [] : outcome.problems;
  assert.ok(problems.some((p) => p.startsWith('polices: ')), problems.join('\n'));
  assert.ok(problems.some((p) => p.startsWith('policies[0].authorities[0].key: ') && p.includes('missing.pub')), problems.join('\n'));
  for (const p of problems) assert.ok(s.logs.some((l) => l.level === 50 && l.msg === `config reload: ${p}`), `not logged: ${p}`);

  const still = await pull(s, 'reload/bad', 'v1');
  assert.equal(still.status, 200, 'the running config no longer serves');
  assert.equal(still.headers['sigil-verification'], 'verified');
  const ready = await json(`${s.url}/readyz`);
  assert.equal(ready.status, 200, 'a refused reload does not make sigil unready: it serves as before');
  const degraded = (ready.body.degraded as Record<string, string> | undefined)?.config ?? '';
  assert.match(degraded, /refused, 2 problem\(s\): /);
  assert.match(degraded, /missing\.pub/);
  assert.equal(await metric(s, 'sigil_config_reloads_total{result="failure"}'), 1);
  assert.equal(await metric(s, 'sigil_config_reloads_total{result="success"}'), 0);
  assert.equal(await metric(s, 'sigil_config_last_reload_successful'), 0);

  assert.equal((await s.reload(env.config(prod(denyKey)))).ok, true);
  assert.equal((await pull(s, 'reload/bad', 'v1')).status, 403, 'the fixed config applies');
  assert.equal((await json(`${s.url}/readyz`)).body.degraded, undefined);
  assert.equal(await metric(s, 'sigil_config_reloads_total{result="success"}'), 1);
  assert.equal(await metric(s, 'sigil_config_last_reload_successful'), 1);
});

test('a trusted root that validates as JSON but cannot be loaded is refused with the reason; the running trust stays', async () => {
  const img = await env.push('reload/root', 'v1');
  await pushLegacySignature(env.target, 'reload/root', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
  const s = await env.sigil(prod(allowKey));
  const root = join(dir, 'not-a-root.json');
  await writeFile(root, '{"tlogs": []}');
  const outcome = await s.reload(env.config(prod(denyKey), { trustedRoots: ['public-good', root] }));
  assert.equal(outcome.ok, false);
  assert.match(outcome.ok ? '' : outcome.problems.join('\n'), /^trust\.trustedRoot: .*not-a-root\.json.*not a Sigstore trusted root/);
  assert.equal((await pull(s, 'reload/root', 'v1')).status, 200, 'nothing of the refused config applies');
});

test('a reload whose config names a FIFO, a device or a huge file is refused at once; the next reload applies', { timeout: 60_000 }, async () => {
  const img = await env.push('reload/fifo', 'v1');
  await pushLegacySignature(env.target, 'reload/fifo', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
  const s = await env.sigil(prod(allowKey));
  // Each would be read without end (a FIFO no one writes to) or whole into memory (a device, a huge file).
  const fifo = join(dir, 'key-fifo.pub');
  execFileSync('mkfifo', [fifo]);
  const huge = join(dir, 'huge-root.json');
  await writeFile(huge, '');
  await truncate(huge, MAX_CONFIG_FILE_BYTES + 1);
  const refused = [
    [env.config(prod(fifo)), /^policies\[0\]\.authorities\[0\]\.key: cannot read .*key-fifo\.pub: not a regular file but a FIFO$/],
    [env.config(prod('/dev/zero')), /^policies\[0\]\.authorities\[0\]\.key: cannot read \/dev\/zero: not a regular file but a device$/],
    [env.config(prod(denyKey), { trustedRoots: ['public-good', huge] }), /^trust\.trustedRoot\[1\]: cannot read .*huge-root\.json: larger than \d+ bytes$/],
  ] as const;
  for (const [yaml, problem] of refused) {
    const outcome = await s.reload(yaml);
    assert.equal(outcome.ok, false);
    assert.match(outcome.ok ? '' : outcome.problems.join('\n'), problem);
    assert.equal((await pull(s, 'reload/fifo', 'v1')).status, 200, 'the running config still serves');
  }
  assert.equal((await s.reload(env.config(prod(denyKey)))).ok, true, 'a later reload is not stuck behind a refused one');
  assert.equal((await pull(s, 'reload/fifo', 'v1')).status, 403);
});

test('under load, during repeated reloads, every request is answered, each under the policy of the generation that served it', async () => {
  const img = await env.push('reload/load', 'v1');
  await pushLegacySignature(env.target, 'reload/load', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
  const s = await env.sigil(prod(allowKey));
  const RELOADS = 16;
  const WORKERS = 6;
  /** Requests answered between two reloads, at least: each generation serves some. */
  const PER_GENERATION = 4;
  const allows = new Map<number, boolean>([[1, true]]);
  const answers: Array<{ id: string; kind: 'manifest' | 'blob'; status: number; verification?: string; ok: boolean }> = [];
  const failures: string[] = [];
  let reloading = true;
  let wake: (() => void) | undefined;
  /** Resolves once `n` more requests have been answered (or one failed). */
  const moreAnswers = async (n: number): Promise<void> => {
    const target = answers.length + n;
    while (answers.length < target && failures.length === 0) await new Promise<void>((r) => (wake = r));
  };

  const worker = async (w: number) => {
    for (let i = 0; reloading; i++) {
      const id = `load-${w}-${i}`;
      const blob = i % 3 === 2;
      try {
        const path = blob ? `blobs/${img.layers[0].digest}` : 'manifests/v1';
        const res = await request(`${s.url}/v2/reload/load/${path}`, { headers: { 'x-request-id': id, accept: img.mediaType } });
        const body = Buffer.from(await res.body.arrayBuffer());
        const verification = res.headers['sigil-verification'] as string | undefined;
        answers.push({ id, kind: blob ? 'blob' : 'manifest', status: res.statusCode, verification, ok: blob ? sha256(body) === img.layers[0].digest : res.statusCode !== 200 || sha256(body) === img.digest });
      } catch (err) {
        failures.push(`${id}: ${String(err)}`);
      }
      wake?.();
    }
  };
  const workers = Array.from({ length: WORKERS }, (_, w) => worker(w));
  for (let r = 0; r < RELOADS; r++) {
    await moreAnswers(PER_GENERATION);
    const allow = r % 2 === 1;
    const outcome = await s.reload(env.config(prod(allow ? allowKey : denyKey)));
    assert.ok(outcome.ok, JSON.stringify(outcome));
    allows.set(outcome.generation, allow);
  }
  await moreAnswers(PER_GENERATION);
  reloading = false;
  await Promise.all(workers);

  assert.deepEqual(failures, [], 'requests failed during reloads');
  // The access line is written as the answer goes out; the client may read it first.
  const generationOf = async (id: string): Promise<number | undefined> => {
    for (let i = 0; i < 100; i++) {
      const line = s.logs.find((l) => l.msg === 'request completed' && l.reqId === id);
      if (line) return line.generation as number;
      await sleep(10);
    }
    return undefined;
  };
  const served = new Map<number, number>();
  for (const a of answers) {
    assert.ok(a.ok, `${a.id}: wrong bytes`);
    const g = await generationOf(a.id);
    assert.ok(g !== undefined && allows.has(g), `${a.id}: served by unknown generation ${g}`);
    served.set(g, (served.get(g) ?? 0) + 1);
    if (a.kind === 'blob') {
      assert.equal(a.status, 200, `${a.id}: blob answered ${a.status}`);
    } else if (allows.get(g)) {
      assert.equal(a.status, 200, `${a.id}: generation ${g} allows, answered ${a.status}`);
      assert.equal(a.verification, 'verified');
    } else {
      assert.equal(a.status, 403, `${a.id}: generation ${g} denies, answered ${a.status}`);
    }
  }
  assert.ok(served.size > RELOADS / 2, `requests were served by only ${served.size} generations`);
  // Every replaced generation was closed once its last request was done (a response's end is
  // seen by the server just after the client has read it).
  for (let i = 0; i < 100 && s.app.sigilConfig.draining > 0; i++) await sleep(10);
  assert.equal(s.app.sigilConfig.draining, 0, 'replaced generations left open');
  // Each manifest decision's audit line names its generation: never a decision of one served by the other.
  for (const d of s.logs.filter((l) => l.audit === 'decision')) {
    const g = d.generation as number;
    assert.equal(d.verification === 'verified', allows.get(g), `generation ${g} decided ${String(d.verification)}`);
  }
});

test('a blob streaming when the config is reloaded is served to its end by the old generation, closed only after it', async () => {
  const blob = Buffer.alloc(512 * 1024, 7);
  const digest = sha256(blob);
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const upstream = await startFaultServer(async (req, res) => {
    if (!req.url?.includes('/blobs/')) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(blob.length) });
    res.write(blob.subarray(0, blob.length / 2));
    await released;
    res.end(blob.subarray(blob.length / 2));
  });
  const s = await startSigil(simpleConfig([{ name: 'slow.test', url: upstream.url }]));
  try {
    const res = await request(`${s.url}/v2/slow.test/app/blobs/${digest}`);
    assert.equal(res.statusCode, 200);
    const chunks: Buffer[] = [];
    const body = (async () => {
      for await (const c of res.body) chunks.push(c as Buffer);
    })();
    // The config no longer has that upstream at all.
    const outcome = await s.reload(simpleConfig([{ name: 'other.test', url: 'http://127.0.0.1:9' }]));
    assert.equal(outcome.ok, true);
    assert.equal(s.app.sigilConfig.draining, 1, 'the old generation is still in use');
    const gone = await request(`${s.url}/v2/slow.test/app/blobs/${digest}`);
    await gone.body.dump();
    assert.equal(gone.statusCode, 404, 'a new request still reached the removed upstream');
    release();
    await body;
    assert.equal(sha256(Buffer.concat(chunks)), digest, 'the blob in flight was cut');
    for (let i = 0; i < 100 && s.app.sigilConfig.draining > 0; i++) await sleep(10);
    assert.equal(s.app.sigilConfig.draining, 0, 'the old generation was left open');
  } finally {
    release();
    await s.stop();
    await upstream.stop();
  }
});

test('a reloaded server.logLevel applies to the lines that follow', async () => {
  const s = await env.sigil(prod(allowKey));
  assert.equal((await s.reload(env.config(prod(allowKey)).replace('  logLevel: info', '  logLevel: warn'))).ok, true);
  assert.equal(s.app.log.level, 'warn');
  assert.equal((await s.reload(env.config(prod(allowKey)))).ok, true);
  assert.equal(s.app.log.level, 'info');
  await (await request(`${s.url}/healthz`, { headers: { 'x-request-id': 'heard' } })).body.dump();
  const logged = () => s.logs.some((l) => l.msg === 'request completed' && l.reqId === 'heard');
  for (let i = 0; i < 100 && !logged(); i++) await sleep(10); // (the access line follows the answer)
  assert.equal(logged(), true);
});
