// trust.tuf end to end: sigil serving pulls under a trusted root it keeps fresh from a TUF
// repository the test signs and serves on 127.0.0.1. A TUF update changes the trust (its
// fingerprint keys the verdicts: nothing verified before is reused after), /readyz and /metrics
// show the root version and age, an unreachable repository leaves the configured roots in use,
// and --offline never contacts it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { fakeClock } from '../helpers/clock.js';
import { manualTimer } from '../helpers/fake-registry.js';
import { freePort } from '../helpers/net.js';
import { createPrivateSigstore, type PrivateSigstore } from '../helpers/private-sigstore.js';
import { pushLegacySignature } from '../helpers/publish.js';
import { legacyLayer } from '../helpers/signer.js';
import { startSigil, type SigilHandle } from '../helpers/sigil.js';
import { tempDir } from '../helpers/temp.js';
import { serveTufRepo, TufRepo, type TufServer } from '../helpers/tuf-repo.js';
import { ISSUER, SUBJECT, UPSTREAM, pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

const REFRESH = '1h';
const REFRESH_MS = 3_600_000;

let env: VerifyEnv;
/** Another private Sigstore: what the repository rotates to (env.sigstore is no longer trusted then). */
let other: PrivateSigstore;
let repo: TufRepo;
let server: TufServer;
const sigils: SigilHandle[] = [];

before(async () => {
  env = await startVerifyEnv();
  other = await createPrivateSigstore(await tempDir('sigil-other-sigstore'));
  repo = await TufRepo.create({ 'trusted_root.json': env.sigstore.trustedRootJson });
  server = await serveTufRepo(repo.dir);
});
after(async () => {
  for (const s of sigils) await s.stop();
  await server?.close();
  await env?.stop();
});

/** Sigil with the public-good root as its floor and trust.tuf pointing at `url`. */
async function sigilWithTuf(url: string, opts: { cacheDir?: string; offline?: boolean } = {}) {
  const cacheDir = opts.cacheDir ?? (await tempDir('sigil-tuf-cache'));
  const store = await tempDir('sigil-tuf-store');
  const yaml = `
server:
  listen: 127.0.0.1:0
  logLevel: info
upstreams:
  - name: ${UPSTREAM}
    url: ${env.registry.url}
defaultUpstream: ${UPSTREAM}
trust:
  trustedRoot: [public-good]
  tuf:
    url: ${url}
    root: ${repo.initialRootPath}
    cacheDir: ${cacheDir}
    refresh: ${REFRESH}
policies:
  - name: keyless
    match: ["${UPSTREAM}/**"]
    mode: enforce
    authorities:
      - keyless: { issuer: ${ISSUER}, subject: ${SUBJECT} }
cache:
  verifications: { ttl: 24h }
  store: { dir: ${store}, maxBytes: 1073741824 }
`;
  const clock = fakeClock();
  const timer = manualTimer();
  const sigil = await startSigil(yaml, { offline: opts.offline, tuf: { now: clock.now, timer: timer.timer } });
  sigils.push(sigil);
  return { sigil, clock, timer, cacheDir };
}

async function readyz(sigil: SigilHandle): Promise<{ status: number; body: Record<string, any> }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const res = await request(`${sigil.url}/readyz`);
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

async function metricsText(sigil: SigilHandle): Promise<string> {
  return (await request(`${sigil.url}/metrics`)).body.text();
}

async function counted(sigil: SigilHandle, name: 'verifications' | 'verdictCache', labels: Record<string, string>): Promise<number> {
  const values = (await sigil.metrics[name].get()).values as Array<{ labels: Record<string, string | number | undefined>; value: number }>;
  return values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((n, v) => n + v.value, 0);
}

/** An image signed keylessly by `by` (legacy .sig with certificate, chain and Rekor SET). */
async function signedImage(repository: string, by: PrivateSigstore): Promise<string> {
  const img = await env.push(repository, 'v1');
  const id = by.issueIdentity(SUBJECT, ISSUER);
  await pushLegacySignature(env.target, repository, img.digest, [legacyLayer(id, img.digest, { rekor: by })]);
  return img.digest;
}

describe('trust.tuf', () => {
  test('a TUF update changes the trust: a verdict made before it is not reused after it', async () => {
    const { sigil, clock, timer } = await sigilWithTuf(server.url);
    await signedImage('app/rotated', env.sigstore);
    // Trusted through the TUF root only (the floor is public-good's).
    const first = await pull(sigil, 'app/rotated', 'v1');
    assert.equal(first.status, 200, first.body.toString());
    assert.equal(first.headers['sigil-verification'], 'verified');
    const again = await pull(sigil, 'app/rotated', 'v1');
    assert.equal(again.status, 200);
    assert.equal(await counted(sigil, 'verdictCache', { result: 'hit' }), 1, 'within its lifetime (24h) the verdict is reused');
    const before = await readyz(sigil);
    assert.equal(before.status, 200);
    assert.deepEqual(before.body.detail.tuf, {
      url: server.url,
      offline: false,
      rootVersion: 1,
      verifiedAt: new Date(clock.now()).toISOString(),
      ageSeconds: 0,
      lastAttempt: { at: new Date(clock.now()).toISOString(), ok: true },
    });
    assert.equal(before.body.degraded, undefined);

    // The repository rotates to another Sigstore: env.sigstore's CA is no longer trusted.
    await repo.setTarget('trusted_root.json', other.trustedRootJson);
    clock.advance(REFRESH_MS);
    assert.deepEqual(timer.armed, [REFRESH_MS]);
    timer.fire();
    await sigil.tuf?.settled();
    const verificationsBefore = await counted(sigil, 'verifications', {});
    const after = await pull(sigil, 'app/rotated', 'v1');
    assert.equal(after.status, 403, 'verified an hour ago, denied under the new trust');
    assert.equal(after.json().errors[0].code, 'DENIED');
    assert.equal(await counted(sigil, 'verifications', {}), verificationsBefore + 1, 'verified again, not answered from the verdict cache');
    const text = await metricsText(sigil);
    assert.match(text, /^sigil_tuf_refreshes_total\{result="success"\} 2$/m);
    assert.match(text, /^sigil_tuf_root_version 1$/m);
    assert.match(text, /^sigil_tuf_root_age_seconds 0$/m);
    // An image of the new Sigstore passes.
    await signedImage('app/new-sigstore', other);
    const fresh = await pull(sigil, 'app/new-sigstore', 'v1');
    assert.equal(fresh.status, 200, fresh.body.toString());
  });

  test('the repository unreachable at start: the configured roots serve, /readyz says so, metrics count it', async () => {
    const { sigil } = await sigilWithTuf(`http://127.0.0.1:${await freePort()}`);
    const r = await readyz(sigil);
    assert.equal(r.status, 200, 'sigil serves under its configured roots');
    assert.equal(r.body.status, 'ready');
    assert.match(r.body.degraded.tuf, /^refresh from http:\/\/127\.0\.0\.1:\d+ failed at .*; using trust\.trustedRoot only$/);
    assert.equal(r.body.detail.tuf.rootVersion, null);
    assert.equal(r.body.detail.tuf.lastAttempt.ok, false);
    const text = await metricsText(sigil);
    assert.match(text, /^sigil_tuf_refreshes_total\{result="failure"\} 1$/m);
    assert.match(text, /^sigil_tuf_root_age_seconds \+Inf$/m);
    await signedImage('app/floor-only', env.sigstore);
    const p = await pull(sigil, 'app/floor-only', 'v1');
    assert.equal(p.status, 403, 'a Sigstore only the repository would have vouched for is not trusted');
  });

  test('--offline never contacts the repository; it starts from the root a previous run verified', async () => {
    const online = await sigilWithTuf(server.url);
    const asked = server.requests.length;
    await online.sigil.stop();
    sigils.splice(sigils.indexOf(online.sigil), 1);
    const { sigil } = await sigilWithTuf(server.url, { cacheDir: online.cacheDir, offline: true });
    assert.equal(server.requests.length, asked, 'not one request');
    const r = await readyz(sigil);
    assert.equal(r.status, 200);
    assert.equal(r.body.detail.tuf.offline, true);
    assert.equal(r.body.detail.tuf.rootVersion, 1);
    assert.equal(r.body.detail.tuf.lastAttempt, null);
    assert.equal(r.body.degraded, undefined);
    assert.equal(server.requests.length, asked);
  });
});
