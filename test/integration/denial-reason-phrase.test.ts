import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { MAX_REASON_PHRASE_CHARS } from '../../src/http/reason-phrase.js';
import { pushLegacySignature } from '../helpers/publish.js';
import { rawRequest } from '../helpers/raw-http.js';
import { legacyLayer } from '../helpers/signer.js';
import { startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';
import type { SigilHandle } from '../helpers/sigil.js';

// Go clients (containerd, hence the kubelet) print a refused pull's status line and nothing of
// the body: a denial says why in its reason phrase, `sigil: <a few words> (policy <name>)`,
// while the JSON body stays as it was. (test/e2e/containerd-signed.test.ts: what ctr prints.)
// Denials are counted as `denied`, apart from what warn serves unverified.

let env: VerifyEnv;
let sigil: SigilHandle;
const LONG_POLICY = `prod-${'x'.repeat(200)}`;

before(async () => {
  env = await startVerifyEnv();
  sigil = await env.sigil(`
  - name: prod
    match: ["reg.test/prod/**"]
    mode: enforce
    authorities:
      - { key: ${env.keys.p256.path}, tlog: ignore }
  - name: "prod-é"
    match: ["reg.test/accent/**"]
    mode: enforce
    authorities:
      - { key: ${env.keys.p256.path}, tlog: ignore }
  - name: ${LONG_POLICY}
    match: ["reg.test/long/**"]
    mode: enforce
    authorities:
      - { key: ${env.keys.p256.path}, tlog: ignore }
  - name: rollout
    match: ["reg.test/warn/**"]
    mode: warn
    authorities:
      - { key: ${env.keys.p256.path}, tlog: ignore }
`);
});
after(async () => {
  await env?.stop();
});

const manifestOf = (repo: string, ref: string, method = 'GET') =>
  rawRequest(sigil.port, method, `/v2/${repo}/manifests/${ref}`, { accept: 'application/vnd.oci.image.manifest.v1+json' });

describe('a denial\'s status line says why', () => {
  test('unsigned: `403 sigil: no signature found (policy prod)`, GET and HEAD; the JSON body is the DENIED error as before', async () => {
    const img = await env.push('prod/unsigned', 'v1');
    const g = await manifestOf('prod/unsigned', 'v1');
    assert.equal(g.status, 403);
    assert.equal(g.reason, 'sigil: no signature found (policy prod)');
    const body = JSON.parse(g.body) as { errors: Array<{ code: string; message: string; detail: Record<string, unknown> }> };
    assert.equal(body.errors.length, 1);
    assert.equal(body.errors[0].code, 'DENIED');
    assert.equal(body.errors[0].message, `reg.test/prod/unsigned@${img.digest}: no signature found (policy prod)`);
    assert.deepEqual(body.errors[0].detail, { policy: 'prod', digest: img.digest, outcome: 'unsigned', signatures: [] });
    const h = await manifestOf('prod/unsigned', 'v1', 'HEAD');
    assert.equal(h.status, 403);
    assert.equal(h.reason, 'sigil: no signature found (policy prod)');
  });

  test('signed by a key the policy does not trust: `sigil: no valid signature (policy prod)`', async () => {
    const img = await env.push('prod/other-key', 'v1');
    await pushLegacySignature(env.target, 'prod/other-key', img.digest, [legacyLayer(env.stranger, img.digest)]);
    const r = await manifestOf('prod/other-key', 'v1');
    assert.equal(r.status, 403);
    assert.equal(r.reason, 'sigil: no valid signature (policy prod)');
    assert.match((JSON.parse(r.body) as { errors: Array<{ message: string }> }).errors[0].message, /no valid signature: 1 signature\(s\) found, none verified/);
  });

  test('the manifest asked for as a blob (containerd does) is refused with its own reason', async () => {
    const img = await env.push('prod/as-blob', 'v1');
    assert.equal((await manifestOf('prod/as-blob', 'v1')).status, 403);
    const b = await rawRequest(sigil.port, 'GET', `/v2/prod/as-blob/blobs/${img.digest}`);
    assert.equal(b.status, 403);
    assert.equal(b.reason, 'sigil: denied as a manifest');
  });

  test('a policy name outside printable ASCII is sent as ?, a long one is cut to MAX_REASON_PHRASE_CHARS', async () => {
    await env.push('accent/app', 'v1');
    const a = await manifestOf('accent/app', 'v1');
    assert.equal(a.status, 403);
    assert.equal(a.reason, 'sigil: no signature found (policy prod-?)');
    await env.push('long/app', 'v1');
    const l = await manifestOf('long/app', 'v1');
    assert.equal(l.status, 403);
    assert.equal(l.reason.length, MAX_REASON_PHRASE_CHARS);
    assert.ok(l.reason.startsWith('sigil: no signature found (policy prod-xxx') && l.reason.endsWith('x...'), l.reason);
    assert.match((JSON.parse(l.body) as { errors: Array<{ message: string }> }).errors[0].message, new RegExp(`\\(policy ${LONG_POLICY}\\)$`), 'the body keeps the whole name');
  });

  test('other errors keep the standard phrase', async () => {
    const r = await manifestOf('prod/never-pushed', 'v1');
    assert.equal(r.status, 404);
    assert.equal(r.reason, 'Not Found');
    await env.push('warn/app', 'v1');
    const served = await manifestOf('warn/app', 'v1');
    assert.equal(served.status, 200);
    assert.equal(served.reason, 'OK');
    assert.equal(served.headers['sigil-verification'], 'unverified');
  });
});

test('sigil_manifest_responses_total counts a denial as `denied` and warn\'s unverified answer as `unverified`', async () => {
  await env.push('prod/counted', 'v1');
  await env.push('warn/counted', 'v1');
  const count = async (verification: string, policy: string): Promise<number> =>
    (await sigil.metrics.manifestDecisions.get()).values.find((v) => v.labels.verification === verification && v.labels.policy === policy)?.value ?? 0;
  const [denied0, unverifiedProd0, warned0] = [await count('denied', 'prod'), await count('unverified', 'prod'), await count('unverified', 'rollout')];
  assert.equal((await manifestOf('prod/counted', 'v1')).status, 403);
  assert.equal((await manifestOf('warn/counted', 'v1')).status, 200);
  assert.equal(await count('denied', 'prod'), denied0 + 1);
  assert.equal(await count('unverified', 'prod'), unverifiedProd0, 'a denial is not counted as unverified');
  assert.equal(await count('unverified', 'rollout'), warned0 + 1);
  const text = await rawRequest(sigil.port, 'GET', '/metrics');
  assert.match(text.body, /^sigil_manifest_responses_total\{upstream="reg\.test",verification="denied",policy="prod"\} \d+$/m);
});
