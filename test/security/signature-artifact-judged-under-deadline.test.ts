// Judging a manifest shaped like a signature artifact reads its blobs from the upstream: that is
// part of the decision, so it ends within the verification deadline and holds one of the
// upstream's verification slots like signature discovery does. Otherwise an upstream that drips
// those blobs keeps the decision open for as long as it likes, and any number of them read at
// once (each up to MAX_DISCOVERY_BYTES held in memory).
//
// The hostile upstream is an in-process proxy in front of the real registry (a real registry
// cannot drip); the artifacts are cosign `.sig` manifests as cosign writes them.
import assert from 'node:assert/strict';
import { request as httpRequest, type ServerResponse } from 'node:http';
import { after, before, test } from 'node:test';
import { defaultDeps, type AppDeps } from '../../src/app.js';
import { createLogger } from '../../src/audit/logger.js';
import { isSigilError } from '../../src/errors.js';
import { MAX_CONCURRENT_VERIFICATIONS, MAX_CONCURRENT_VERIFICATIONS_PER_UPSTREAM, ManifestGate, type ManifestDecision } from '../../src/gate/manifest-gate.js';
import { startFaultServer, type FaultServer } from '../helpers/fault-server.js';
import { pushLegacySignature } from '../helpers/publish.js';
import { legacyLayer, sigTag } from '../helpers/signer.js';
import { compileConfig } from '../helpers/sigil.js';
import { startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

const DEADLINE_MS = 1_500;
/** More artifact decisions at once than there are slots in all. */
const HOSTILE = MAX_CONCURRENT_VERIFICATIONS + 2;

let env: VerifyEnv;
let hostile: FaultServer;
let deps: AppDeps;
let gate: ManifestGate;
/** Blob answers the hostile upstream is dripping right now. */
const dripping = new Set<ServerResponse>();

before(async () => {
  env = await startVerifyEnv();
  const target = new URL(env.registry.url);
  hostile = await startFaultServer((req, res) => {
    const url = req.url ?? '';
    if (/^\/v2\/drip\/[^/]+\/blobs\//.test(url) && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      dripping.add(res);
      const drip = setInterval(() => res.write(Buffer.from(' ')), 1_000);
      res.write(Buffer.from('{'));
      res.once('close', () => {
        clearInterval(drip);
        dripping.delete(res);
      });
      return;
    }
    const fwd = httpRequest(new URL(url, target), { method: req.method, headers: { ...req.headers, host: target.host } }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
  const config = await compileConfig(
    [
      'server:',
      '  listen: 127.0.0.1:0',
      'upstreams:',
      '  - name: hostile.test',
      `    url: ${hostile.url}`,
      'defaultUpstream: hostile.test',
      'trust:',
      `  trustedRoot: [public-good, ${env.sigstore.trustedRootPath}]`,
      'policies:',
      '  - name: signed',
      '    match: ["**"]',
      '    mode: enforce',
      '    authorities:',
      `      - { key: ${env.keys.p256.path}, tlog: ignore }`,
    ].join('\n'),
  );
  deps = await defaultDeps(config, { logger: createLogger('silent') });
  gate = new ManifestGate({ config, clients: deps.clients, metrics: deps.metrics, logger: deps.logger, verifier: deps.verifier, verificationDeadlineMs: DEADLINE_MS });
});

after(async () => {
  await hostile?.stop();
  if (deps) {
    await Promise.all([...deps.clients.values()].map((c) => c.close()));
    await deps.hashes.close();
  }
  await env?.stop();
});

/** A cosign `.sig` artifact in `repo` (signing some image digest); its tag. */
async function pushArtifact(repo: string, i: number): Promise<string> {
  const signed = `sha256:${i.toString(16).padStart(64, '0')}`;
  await pushLegacySignature(env.target, repo, signed, [legacyLayer(env.keys.p256, signed)]);
  return sigTag(signed);
}

const sleep = (ms: number): Promise<'late'> => new Promise((r) => setTimeout(() => r('late'), ms));

async function eventually(cond: () => boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) if (cond()) return true;
  return cond();
}

function ending(r: PromiseSettledResult<ManifestDecision>): string {
  if (r.status === 'fulfilled') return r.value.verification;
  const e = r.reason as unknown;
  return isSigilError(e) ? e.code : `error: ${String(e)}`;
}

test('a signature artifact whose blobs drip is judged within the deadline: not shown to be signature data, denied', async () => {
  const tag = await pushArtifact('drip/one', 1);
  const d = gate.decide({ upstream: 'hostile.test', repository: 'drip/one', reference: tag });
  d.catch(() => undefined);
  const r = await Promise.race([Promise.allSettled([d]), sleep(3 * DEADLINE_MS)]);
  assert.notEqual(r, 'late', `the decision was still open after ${3 * DEADLINE_MS} ms while its blob dripped`);
  assert.equal(ending((r as PromiseSettledResult<ManifestDecision>[])[0]), 'POLICY_DENIED');
  assert.ok(await eventually(() => dripping.size === 0, 5_000), `${dripping.size} dripping blob reads were left open`);
  assert.deepEqual(gate.verificationSlots, { running: 0, waiting: 0 });
});

test('signature artifacts of one upstream read their blobs within its share of the verification slots', async () => {
  const tags: Array<[string, string]> = [];
  for (let i = 0; i < HOSTILE; i++) tags.push([`drip/a${i}`, await pushArtifact(`drip/a${i}`, 100 + i)]);
  const decisions = tags.map(([repo, tag]) => gate.decide({ upstream: 'hostile.test', repository: repo, reference: tag }));
  for (const p of decisions) p.catch(() => undefined);
  assert.ok(await eventually(() => dripping.size > 0, 10_000), 'the hostile upstream started dripping');
  await sleep(500);
  assert.ok(
    dripping.size <= MAX_CONCURRENT_VERIFICATIONS_PER_UPSTREAM,
    `${dripping.size} artifact blobs read at once from one upstream (its share: ${MAX_CONCURRENT_VERIFICATIONS_PER_UPSTREAM})`,
  );
  const done = await Promise.race([Promise.allSettled(decisions), sleep(3 * DEADLINE_MS)]);
  assert.notEqual(done, 'late', 'every artifact decision ended within its deadline');
  for (const e of (done as PromiseSettledResult<ManifestDecision>[]).map(ending)) assert.equal(e, 'POLICY_DENIED');
  assert.ok(await eventually(() => dripping.size === 0, 5_000), `${dripping.size} dripping blob reads were left open`);
  assert.deepEqual(gate.verificationSlots, { running: 0, waiting: 0 });
});
