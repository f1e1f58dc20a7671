// A reload swaps policies, keys, trust roots and credentials; nothing decided under the old
// ones may decide a request that starts after it: no verdict, no index that vouched for its
// children, no blob admitted to the store, no stored answer given while the upstream is down,
// no remembered password, no evaluation in flight.
// A request in flight when the reload happens finishes under the generation it started with.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import bcrypt from 'bcryptjs';
import { request } from 'undici';
import { startForwarder, type Forwarder } from '../helpers/forwarder.js';
import { pushLegacySignature } from '../helpers/publish.js';
import { pushIndex } from '../helpers/push.js';
import { legacyLayer } from '../helpers/signer.js';
import type { LogRecord, SigilHandle } from '../helpers/sigil.js';
import { tempDir } from '../helpers/temp.js';
import { ISSUER, SUBJECT, UPSTREAM, pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';
import { Catalog, ContentStore } from '../../src/store/index.js';
import type { Digest } from '../../src/oci/digest.js';

/** Up to 10 s for the store to commit what was pulled. */
const STORE_POLLS = 200;
const STORE_POLL_MS = 50;

let env: VerifyEnv;
let dir: string;

before(async () => {
  env = await startVerifyEnv();
  dir = await tempDir('sigil-reload-');
});
after(async () => {
  await env?.stop();
});

/** One enforce policy named `prod` trusting the key in `keyPath`: the name stays, the key file changes. */
const prod = (keyPath: string) => `
  - name: prod
    match: ["**"]
    mode: enforce
    authorities:
      - { key: ${keyPath}, tlog: ignore }`;

/** A key file holding `pem`, at a path of its own. */
async function keyFile(name: string, pem: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, pem);
  return path;
}

/** Waits until the store in `dir` records `digest` as a blob of `repo` (it commits just after the last byte went out). */
async function storeRecords(dir: string, repo: string, digest: string): Promise<void> {
  const store = await ContentStore.open({ dir, maxBytes: Number.MAX_SAFE_INTEGER });
  try {
    const catalog = new Catalog(store);
    for (let i = 0; i < STORE_POLLS; i++) {
      if (await catalog.hasBlob(UPSTREAM, repo, digest as Digest)) return;
      await sleep(STORE_POLL_MS);
    }
    throw new Error(`the store never recorded ${digest} of ${repo}`);
  } finally {
    await store.close();
  }
}

/** The generation the access log says served the request with this id. */
function servedBy(s: SigilHandle, reqId: string): number | undefined {
  const line = s.logs.find((l: LogRecord) => l.msg === 'request completed' && l.reqId === reqId);
  return line?.generation as number | undefined;
}

describe('after a reload, nothing decided under the old config decides a new request', () => {
  test('a verdict: the same image under a replaced key is denied at once, and allowed again when the key returns', async () => {
    const img = await env.push('reload/key', 'v1');
    await pushLegacySignature(env.target, 'reload/key', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
    const key = await keyFile('key-verdict.pub', env.keys.p256.publicPem);
    const s = await env.sigil(prod(key));
    const before = await pull(s, 'reload/key', img.digest);
    assert.equal(before.status, 200);
    assert.equal(before.headers['sigil-verification'], 'verified');

    await writeFile(key, env.stranger.publicPem);
    assert.equal((await s.reload()).ok, true);
    const denied = await pull(s, 'reload/key', img.digest);
    assert.equal(denied.status, 403, 'the verdict of the replaced key was reused');
    assert.equal(denied.json().errors[0].code, 'DENIED');

    await writeFile(key, env.keys.p256.publicPem);
    assert.equal((await s.reload()).ok, true);
    assert.equal((await pull(s, 'reload/key', img.digest)).status, 200);
  });

  test('a verdict: a keyless signature is denied once its trust root is no longer trusted', async () => {
    const img = await env.push('reload/trust', 'v1');
    const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
    await pushLegacySignature(env.target, 'reload/trust', img.digest, [legacyLayer(id, img.digest, { rekor: env.sigstore })]);
    const keyless = `
  - name: prod
    match: ["**"]
    mode: enforce
    authorities:
      - keyless: { issuer: "${ISSUER}", subject: "${SUBJECT}" }`;
    const s = await env.sigil(keyless);
    assert.equal((await pull(s, 'reload/trust', 'v1')).status, 200);
    // The policy is the same (the same fingerprint); only the trust root changes.
    assert.equal((await s.reload(env.config(keyless, { trustedRoots: ['public-good'] }))).ok, true);
    assert.equal((await pull(s, 'reload/trust', 'v1')).status, 403, 'the verdict of the old trust root was reused');
  });

  test('an index verified before the reload does not vouch for its children after it', async () => {
    const idx = await pushIndex(env.target, 'reload/index', 'v1', [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }]);
    await pushLegacySignature(env.target, 'reload/index', idx.digest, [legacyLayer(env.keys.p256, idx.digest)]);
    const key = await keyFile('key-index.pub', env.keys.p256.publicPem);
    const s = await env.sigil(prod(key));
    assert.equal((await pull(s, 'reload/index', 'v1')).status, 200);
    const child = idx.children[0].digest;
    const viaIndex = await pull(s, 'reload/index', child);
    assert.equal(viaIndex.status, 200, 'before: the child passes through its verified index');

    await writeFile(key, env.stranger.publicPem);
    assert.equal((await s.reload()).ok, true);
    assert.equal((await pull(s, 'reload/index', child)).status, 403, 'the index verified under the old key vouched for its child');
  });

  test('blobs admitted to the store under the old policy are not served from it under the new one', async () => {
    const fwd = await startForwarder(env.registry.url);
    try {
      const img = await env.push('reload/store', 'v1');
      await pushLegacySignature(env.target, 'reload/store', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
      const key = await keyFile('key-store.pub', env.keys.p256.publicPem);
      const storeDir = await tempDir('sigil-reload-store-');
      const extra = `cache:\n  store:\n    dir: ${storeDir}\n    maxBytes: 1073741824`;
      const s = await env.sigil(prod(key), { upstreamUrl: fwd.url, extra });
      assert.equal((await pull(s, 'reload/store', 'v1')).status, 200);
      const blob = async () => {
        const res = await request(`${s.url}/v2/reload/store/blobs/${img.layers[0].digest}`);
        await res.body.arrayBuffer();
        return res.statusCode;
      };
      assert.equal(await blob(), 200);
      await writeFile(key, env.stranger.publicPem);
      assert.equal((await s.reload()).ok, true);
      fwd.setDown(true); // whatever is served now can only come from the store
      // At once: the blob may still be being committed (the store has no record of it yet).
      assert.notEqual(await blob(), 200, 'a blob admitted under the old key was served from the store');
      // And once the store records it as named by the manifest the old key let through.
      await storeRecords(storeDir, 'reload/store', img.layers[0].digest);
      assert.notEqual(await blob(), 200, 'a blob stored under the old key was served from the store');
    } finally {
      fwd.setDown(false);
      await fwd.stop();
    }
  });

  test('a stored answer given while the upstream is down (stale-if-error) is judged by the new policy', async () => {
    const fwd = await startForwarder(env.registry.url);
    try {
      const img = await env.push('reload/stale', 'v1');
      await pushLegacySignature(env.target, 'reload/stale', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
      const key = await keyFile('key-stale.pub', env.keys.p256.publicPem);
      const storeDir = await tempDir('sigil-reload-stale-');
      const s = await env.sigil(prod(key), { upstreamUrl: fwd.url, extra: `cache:\n  store:\n    dir: ${storeDir}\n    maxBytes: 1073741824` });
      assert.equal((await pull(s, 'reload/stale', 'v1')).status, 200); // kept: the manifest, its tag, its signature
      fwd.setDown(true); // from now on every answer comes from the store (the new generation's memory caches are empty)
      await writeFile(key, env.stranger.publicPem);
      assert.equal((await s.reload()).ok, true);
      assert.equal((await pull(s, 'reload/stale', 'v1')).status, 403, 'the stored answer passed under the old key only');
      await writeFile(key, env.keys.p256.publicPem);
      assert.equal((await s.reload()).ok, true);
      const stale = await pull(s, 'reload/stale', 'v1');
      assert.equal(stale.status, 200, 'it passes again under a policy that trusts its signer');
      assert.equal(stale.headers['sigil-stale'], 'true', 'answered from the store');
    } finally {
      fwd.setDown(false);
      await fwd.stop();
    }
  });

  test('a password remembered as good is not accepted once the htpasswd file no longer has it', async () => {
    const img = await env.push('reload/auth', 'v1');
    const htpasswd = join(dir, 'htpasswd');
    await writeFile(htpasswd, `alice:${bcrypt.hashSync('old-secret', 4)}\n`);
    const policies = `
  - name: open
    match: ["**"]
    mode: off
    authorities:
      - keyless: { issuerRegExp: "^.*$", subjectRegExp: "^.*$" }`;
    const yaml = env.config(policies).replace('server:\n', `server:\n  auth:\n    htpasswd: ${htpasswd}\n`);
    const s = await env.sigil(policies);
    assert.equal((await s.reload(yaml)).ok, true, 'auth turned on by a reload');
    const as = async (password: string) => {
      const res = await request(`${s.url}/v2/reload/auth/manifests/${img.digest}`, {
        headers: { authorization: `Basic ${Buffer.from(`alice:${password}`).toString('base64')}`, accept: img.mediaType },
      });
      await res.body.arrayBuffer();
      return res.statusCode;
    };
    assert.equal(await as('old-secret'), 200);
    await writeFile(htpasswd, `alice:${bcrypt.hashSync('new-secret', 4)}\n`);
    assert.equal((await s.reload()).ok, true);
    assert.equal(await as('old-secret'), 401, 'the remembered old password was accepted');
    assert.equal(await as('new-secret'), 200);
  });
});

describe('a request in flight during a reload', () => {
  let fwd: Forwarder;
  before(async () => {
    fwd = await startForwarder(env.registry.url);
  });
  after(async () => {
    await fwd?.stop();
  });

  for (const [first, then] of [['allows', 'denies'], ['denies', 'allows']] as const) {
    test(`finishes under the config it started with (${first}); one that starts after the reload is decided by the new one (${then}) and joins nothing in flight`, async () => {
      const repo = `reload/inflight-${first}`;
      const img = await env.push(repo, 'v1');
      await pushLegacySignature(env.target, repo, img.digest, [legacyLayer(env.keys.p256, img.digest)]);
      const allow = await keyFile(`allow-${first}.pub`, env.keys.p256.publicPem);
      const deny = await keyFile(`deny-${first}.pub`, env.stranger.publicPem);
      const [k1, k2] = first === 'allows' ? [allow, deny] : [deny, allow];
      const s = await env.sigil(prod(k1), { upstreamUrl: fwd.url });

      const held = fwd.hold('GET', `/v2/${repo}/manifests/`);
      const early = request(`${s.url}/v2/${repo}/manifests/v1`, { headers: { 'x-request-id': `early-${first}`, accept: img.mediaType } });
      await held.arrived; // the early request is inside the gate, its manifest fetch under way
      assert.equal((await s.reload(env.config(prod(k2), { upstreamUrl: fwd.url }))).ok, true);
      const late = await request(`${s.url}/v2/${repo}/manifests/v1`, { headers: { 'x-request-id': `late-${first}`, accept: img.mediaType } });
      await late.body.arrayBuffer();
      held.release();
      const e = await early;
      await e.body.arrayBuffer();

      const [allowed, denied] = first === 'allows' ? [e, late] : [late, e];
      assert.equal(allowed.statusCode, 200);
      assert.equal(allowed.headers['sigil-verification'], 'verified');
      assert.equal(denied.statusCode, 403);
      assert.equal(servedBy(s, `early-${first}`), 1);
      assert.equal(servedBy(s, `late-${first}`), 2);
    });
  }
});
