import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import type { CliIo } from '../../src/cli/io.js';
import { verifyCli } from '../../src/cli/verify.js';
import { Catalog, ContentStore } from '../../src/store/index.js';
import type { Digest } from '../../src/oci/digest.js';
import { cosignLookups, describePull, exchangeHeader as h, fluxPull, helmPull, listTags, GGCR_ACCEPT, ORAS_ACCEPT, type ToolPull } from '../helpers/artifact-clients.js';
import { ARTIFACT_MEDIA, pushFluxArtifact, pushHelmChart, pushOrasArtifact, type PushedArtifact } from '../helpers/artifacts.js';
import { startForwarder, type Forwarder } from '../helpers/forwarder.js';
import { addToFallbackIndex, pushBundleReferrer, pushLegacySignature } from '../helpers/publish.js';
import { bundleFor, legacyLayer, type Signer } from '../helpers/signer.js';
import type { SigilHandle } from '../helpers/sigil.js';
import { tempDir } from '../helpers/temp.js';
import { sha256 } from '../helpers/digest.js';
import { ISSUER, SUBJECT, pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

// Flux OCI artifacts (`flux push artifact`), Helm charts (`helm push`) and OCI 1.1 artifacts
// (`oras push --artifact-type`, empty config) pass through the same verification as images,
// pulled the way their clients pull them: source-controller's go-containerregistry requests
// (semver through tags/list, HEAD for the revision, the artifact by digest, its layer) and
// helm's oras-go requests (HEAD, then GET with the one media type resolved, then the blobs).

let env: VerifyEnv;
let fwd: Forwarder;
let sigil: SigilHandle;
let storeDir: string;

/** The manifest answer of a tool's pull (the HEAD that resolved it, else the GET). */
function resolved(p: ToolPull) {
  const e = p.exchanges.find((x) => x.path.includes('/manifests/'));
  assert.ok(e, describePull(p));
  return e;
}

async function signWithKey(repo: string, a: PushedArtifact, key: Signer = env.keys.p256): Promise<void> {
  await pushLegacySignature(env.target, repo, a.digest, [legacyLayer(key, a.digest)]);
}

before(async () => {
  env = await startVerifyEnv();
  fwd = await startForwarder(env.registry.url);
  storeDir = join(await tempDir('sigil-artifacts-'), 'store');
  sigil = await env.sigil(
    `
  - name: flux
    match: ["reg.test/flux/**"]
    mode: enforce
    authorities:
      - { key: ${env.keys.p256.path}, tlog: ignore }
      - keyless: { issuer: "${ISSUER}", subject: "${SUBJECT}" }
  - name: charts
    match: ["reg.test/charts/**"]
    mode: enforce
    authorities:
      - keyless: { issuer: "${ISSUER}", subjectRegExp: "^https://github\\\\.com/acme/.+$" }
  - name: oras
    match: ["reg.test/oras/**"]
    mode: enforce
    authorities:
      - { key: ${env.keys.p256.path}, tlog: ignore }`,
    { upstreamUrl: fwd.url, extra: `cache:\n  store:\n    dir: ${storeDir}\n    maxBytes: 1073741824` },
  );
});
after(async () => {
  await env?.stop();
  await fwd?.stop();
});

describe('Flux OCI artifacts, pulled as source-controller pulls them', () => {
  test('ref.semver picks the highest signed version through tags/list; served verified, the layer whole', async () => {
    const pushed = new Map<string, PushedArtifact>();
    for (const v of ['1.0.0', '1.1.0', '1.2.0', '2.0.0']) {
      const a = await pushFluxArtifact(env.target, 'flux/app', v);
      await signWithKey('flux/app', a);
      pushed.set(v, a);
    }
    await pushFluxArtifact(env.target, 'flux/app', 'latest');
    // the tag list is the upstream's: semver sees every version, signed or not
    const tags = await listTags(sigil.url, 'flux/app', 'ggcr');
    for (const t of ['1.0.0', '1.1.0', '1.2.0', '2.0.0', 'latest']) assert.ok(tags.includes(t), tags.join(' '));
    for (const prefix of ['reg.test/', '']) {
      const p = await fluxPull(sigil.url, `${prefix}flux/app`, { semver: '>=1.0.0 <2.0.0' });
      assert.equal(p.failed, undefined, describePull(p));
      assert.equal(p.tag, '1.2.0');
      const want = pushed.get('1.2.0') as PushedArtifact;
      const head = resolved(p);
      assert.equal(head.method, 'HEAD');
      assert.equal(h(head, 'sigil-verification'), 'verified');
      assert.equal(h(head, 'sigil-policy'), 'flux');
      assert.equal(h(head, 'sigil-signer'), env.keys.p256.keyId);
      assert.equal(h(head, 'content-type'), ARTIFACT_MEDIA.OCI_MANIFEST);
      assert.equal(p.digest, want.digest);
      assert.deepEqual(p.manifest, want.manifest);
      assert.deepEqual(p.blobs.get(want.layers[0].digest), want.blobs.get(want.layers[0].digest));
    }
  });

  test('enforce: an unsigned artifact is denied at the revision lookup (HEAD) and by GET; nothing is pulled', async () => {
    await pushFluxArtifact(env.target, 'flux/unsigned', '1.0.0');
    const p = await fluxPull(sigil.url, 'flux/unsigned', { tag: '1.0.0' });
    assert.ok(p.failed, describePull(p));
    assert.deepEqual(p.exchanges.map((e) => [e.method, e.status]), [['HEAD', 403], ['GET', 403]]);
    const body = JSON.parse(p.failed.body.toString()) as { errors: Array<{ code: string; detail: { outcome: string } }> };
    assert.equal(body.errors[0].code, 'DENIED');
    assert.equal(body.errors[0].detail.outcome, 'unsigned');
    assert.equal(p.manifest, undefined);
  });

  test('the newest version in range unsigned: the semver pick is denied, not swapped for an older signed one', async () => {
    for (const v of ['3.0.0', '3.1.0']) {
      const a = await pushFluxArtifact(env.target, 'flux/rollout', v);
      if (v === '3.0.0') await signWithKey('flux/rollout', a);
    }
    const p = await fluxPull(sigil.url, 'flux/rollout', { semver: '~3' });
    assert.equal(p.tag, '3.1.0');
    assert.ok(p.failed, describePull(p));
    assert.equal(p.failed.status, 403);
    const older = await fluxPull(sigil.url, 'flux/rollout', { tag: '3.0.0' });
    assert.equal(older.failed, undefined, describePull(older));
  });

  test('signed by a key the policy does not trust: denied, the reason names the failed signature', async () => {
    const a = await pushFluxArtifact(env.target, 'flux/stranger', '1.0.0');
    await signWithKey('flux/stranger', a, env.stranger);
    const r = await pull(sigil, 'flux/stranger', '1.0.0', 'GET', GGCR_ACCEPT);
    assert.equal(r.status, 403);
    const e = r.json().errors[0];
    assert.equal(e.detail?.outcome, 'invalid');
    assert.match(e.message, /signature/i);
  });

  test('keyless: a cosign v3 bundle referrer on a Flux artifact verifies it', async () => {
    const a = await pushFluxArtifact(env.target, 'flux/keyless', '1.0.0');
    const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
    await pushBundleReferrer(env.target, 'flux/keyless', { digest: a.digest, size: a.manifest.length, mediaType: a.mediaType }, bundleFor(id, a.digest, { rekor: env.sigstore }));
    const p = await fluxPull(sigil.url, 'flux/keyless', { tag: '1.0.0' });
    assert.equal(p.failed, undefined, describePull(p));
    assert.equal(h(resolved(p), 'sigil-signer'), `${SUBJECT} (issuer ${ISSUER})`);
  });

  test("Flux's own cosign check kept behind sigil: its .sig and bundle-referrer lookups get the signature data unchanged", async () => {
    const keyed = await pushFluxArtifact(env.target, 'flux/both', '1.0.0');
    await signWithKey('flux/both', keyed);
    const k = await cosignLookups(sigil.url, 'flux/both', keyed.digest);
    assert.equal(k.failed, undefined, describePull(k));
    const sig = k.exchanges.find((e) => e.path.endsWith('.sig'));
    assert.equal(sig && h(sig, 'sigil-verification'), 'skipped');
    assert.equal(k.blobs.size, 2); // the .sig config and its one payload
    const bundled = await pushFluxArtifact(env.target, 'flux/both', '2.0.0');
    const bundle = bundleFor(env.sigstore.issueIdentity(SUBJECT, ISSUER), bundled.digest, { rekor: env.sigstore });
    const ref = await pushBundleReferrer(env.target, 'flux/both', { digest: bundled.digest, size: bundled.manifest.length, mediaType: bundled.mediaType }, bundle);
    const b = await cosignLookups(sigil.url, 'flux/both', bundled.digest);
    assert.equal(b.failed, undefined, describePull(b));
    assert.deepEqual(b.exchanges.map((e) => e.path), [`/v2/flux/both/referrers/${bundled.digest}`, `/v2/flux/both/manifests/${ref}`, `/v2/flux/both/blobs/${sha256(bundle)}`]);
    assert.equal(h(b.exchanges[1], 'sigil-verification'), 'skipped');
    assert.deepEqual(b.blobs.get(sha256(bundle)), bundle);
  });

  test('the blobs of a denied artifact are not kept: with the upstream down they are not served from the store', async () => {
    const ok = await pushFluxArtifact(env.target, 'flux/kept', '1.0.0');
    await signWithKey('flux/kept', ok);
    const denied = await pushFluxArtifact(env.target, 'flux/kept', '1.1.0');
    assert.equal((await fluxPull(sigil.url, 'flux/kept', { tag: '1.0.0' })).failed, undefined);
    assert.equal((await fluxPull(sigil.url, 'flux/kept', { tag: '1.1.0' })).failed?.status, 403);
    // A client that asks for the denied artifact's blobs directly gets them from the upstream, unstored.
    for (const d of [denied.config.digest, denied.layers[0].digest]) {
      const res = await request(`${sigil.url}/v2/flux/kept/blobs/${d}`);
      await res.body.arrayBuffer();
    }
    await waitStored(ok.layers[0].digest, 'flux/kept');
    fwd.setDown(true);
    try {
      const kept = await request(`${sigil.url}/v2/flux/kept/blobs/${ok.layers[0].digest}`);
      assert.deepEqual(Buffer.from(await kept.body.arrayBuffer()), ok.blobs.get(ok.layers[0].digest));
      assert.equal(kept.statusCode, 200);
      for (const d of [denied.config.digest, denied.layers[0].digest]) {
        const res = await request(`${sigil.url}/v2/flux/kept/blobs/${d}`);
        await res.body.arrayBuffer();
        assert.notEqual(res.statusCode, 200, `${d} was served with the upstream down`);
      }
    } finally {
      fwd.setDown(false);
    }
    const store = await ContentStore.open({ dir: storeDir, maxBytes: Number.MAX_SAFE_INTEGER });
    try {
      for (const d of [denied.config.digest, denied.layers[0].digest]) assert.equal(await store.has(d as Digest), false);
    } finally {
      await store.close();
    }
  });
});

/** Up to 5 s for the store to commit a blob that was pulled (it is renamed into place just after its last byte went out). */
async function waitStored(digest: string, repo: string): Promise<void> {
  const store = await ContentStore.open({ dir: storeDir, maxBytes: Number.MAX_SAFE_INTEGER });
  try {
    const catalog = new Catalog(store);
    for (let i = 0; i < 100 && !(await catalog.hasBlob('reg.test', repo, digest as Digest)); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(await catalog.hasBlob('reg.test', repo, digest as Digest), `${digest} not stored`);
  } finally {
    await store.close();
  }
}

describe('Helm charts, pulled as `helm pull oci://` pulls them (oras-go)', () => {
  const charts: Array<PushedArtifact & { tag: string; repository: string }> = [];
  before(async () => {
    const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
    for (const v of ['0.1.0', '0.2.0+build.7']) {
      const c = await pushHelmChart(env.target, 'charts', 'demo', v);
      await pushLegacySignature(env.target, c.repository, c.digest, [legacyLayer(id, c.digest, { rekor: env.sigstore })]);
      charts.push(c);
    }
  });

  test('a keyless-signed chart resolves by HEAD (length, digest, type), then GET with that one type; config and chart served', async () => {
    assert.deepEqual((await listTags(sigil.url, 'charts/demo', 'oras')).sort(), ['0.1.0', '0.2.0_build.7', `${charts[0].digest.replace(':', '-')}.sig`, `${charts[1].digest.replace(':', '-')}.sig`].sort());
    for (const c of charts) {
      const p = await helmPull(sigil.url, c.repository, c.tag);
      assert.equal(p.failed, undefined, describePull(p));
      const head = resolved(p);
      assert.equal(h(head, 'sigil-verification'), 'verified');
      assert.equal(h(head, 'sigil-signer'), `${SUBJECT} (issuer ${ISSUER})`);
      assert.equal(h(head, 'content-length'), String(c.manifest.length));
      assert.deepEqual(p.manifest, c.manifest);
      for (const d of [c.config.digest, c.layers[0].digest]) assert.deepEqual(p.blobs.get(d), c.blobs.get(d));
    }
  });

  test('Flux pulling the chart (OCIRepository with the chart layerSelector): semver reads `_` as `+`, the chart layer served', async () => {
    const p = await fluxPull(sigil.url, 'charts/demo', { semver: '>=0.2.0', layerMediaType: ARTIFACT_MEDIA.HELM_CHART });
    assert.equal(p.failed, undefined, describePull(p));
    assert.equal(p.tag, '0.2.0_build.7');
    assert.equal(h(resolved(p), 'sigil-verification'), 'verified');
    assert.deepEqual([...p.blobs.keys()], [charts[1].layers[0].digest]);
  });

  test('an unsigned chart and one signed by an identity the policy does not name are denied at resolve', async () => {
    await pushHelmChart(env.target, 'charts', 'unsigned', '1.0.0');
    const u = await helmPull(sigil.url, 'charts/unsigned', '1.0.0');
    assert.equal(u.failed?.status, 403, describePull(u));
    assert.equal(u.exchanges.length, 1);
    const other = env.sigstore.issueIdentity('https://github.com/evil/app/.github/workflows/release.yml@refs/heads/main', ISSUER);
    const c = await pushHelmChart(env.target, 'charts', 'other', '1.0.0');
    await pushLegacySignature(env.target, c.repository, c.digest, [legacyLayer(other, c.digest, { rekor: env.sigstore })]);
    const o = await helmPull(sigil.url, 'charts/other', '1.0.0');
    assert.equal(o.failed?.status, 403, describePull(o));
    const why = await pull(sigil, 'charts/other', '1.0.0', 'GET', ORAS_ACCEPT);
    assert.equal(why.json().errors[0].detail?.outcome, 'invalid');
    assert.match(why.body.toString(), /evil/);
  });
});

describe('OCI 1.1 artifacts (artifactType, empty config)', () => {
  const rules = { name: 'rules.yaml', mediaType: 'application/vnd.acme.rules.layer.v1+yaml', content: Buffer.from('rules: []\n') };

  test('signed: verified for go-containerregistry and oras-go alike; unsigned: denied', async () => {
    const a = await pushOrasArtifact(env.target, 'oras/rules', 'v1', { artifactType: 'application/vnd.acme.rules.v1', files: [rules] });
    await signWithKey('oras/rules', a);
    await pushOrasArtifact(env.target, 'oras/rules', 'v2', { artifactType: 'application/vnd.acme.rules.v1', files: [{ ...rules, content: Buffer.from('rules: [x]\n') }] });
    for (const accept of [GGCR_ACCEPT, ORAS_ACCEPT]) {
      const r = await pull(sigil, 'oras/rules', 'v1', 'GET', accept);
      assert.equal(r.status, 200, r.body.toString());
      assert.deepEqual(r.body, a.manifest);
      assert.equal(r.headers['sigil-verification'], 'verified');
      assert.equal((await pull(sigil, 'oras/rules', 'v2', 'HEAD', accept)).status, 403);
    }
  });

  test('an artifact attached to a signed one (oras attach) is judged on its own: it is not signature data', async () => {
    const subject = await pushOrasArtifact(env.target, 'oras/app', 'v1', { artifactType: 'application/vnd.acme.rules.v1', files: [rules] });
    await signWithKey('oras/app', subject);
    const attach = async (text: string) => {
      const sbom = await pushOrasArtifact(env.target, 'oras/app', undefined, {
        artifactType: 'application/spdx+json',
        files: [{ name: 'sbom.spdx.json', mediaType: 'application/spdx+json', content: Buffer.from(text) }],
        subject: { digest: subject.digest, size: subject.manifest.length, mediaType: subject.mediaType },
      });
      await addToFallbackIndex(env.target, 'oras/app', subject.digest, { mediaType: sbom.mediaType, artifactType: 'application/spdx+json', digest: sbom.digest, size: sbom.manifest.length });
      return sbom;
    };
    const unsigned = await attach('{"spdxVersion":"SPDX-2.3","name":"a"}');
    const signed = await attach('{"spdxVersion":"SPDX-2.3","name":"b"}');
    await signWithKey('oras/app', signed);
    const refs = await request(`${sigil.url}/v2/oras/app/referrers/${subject.digest}?artifactType=application%2Fspdx%2Bjson`);
    const list = (await refs.body.json()) as { manifests: Array<{ digest: string; artifactType: string }> };
    assert.equal(refs.headers['oci-filters-applied'], 'artifactType');
    assert.deepEqual(list.manifests.map((m) => [m.digest, m.artifactType]).sort(), [[unsigned.digest, 'application/spdx+json'], [signed.digest, 'application/spdx+json']].sort());
    const u = await pull(sigil, 'oras/app', unsigned.digest, 'GET', ORAS_ACCEPT);
    assert.equal(u.status, 403);
    assert.equal(u.json().errors[0].detail?.outcome, 'unsigned');
    const s = await pull(sigil, 'oras/app', signed.digest, 'GET', ORAS_ACCEPT);
    assert.equal(s.status, 200, s.body.toString());
    assert.equal(s.headers['sigil-verification'], 'verified');
  });
});

describe('sigil verify, as `cosign verify` is run on them', () => {
  /** `sigil verify ARGS` in-process, without a config: the flags are the authority. */
  async function verify(args: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const io: CliIo = { env: {}, cwd: storeDir, stdout: (t) => void (out += t), stderr: (t) => void (err += t) };
    return { code: await verifyCli(io, [...args, '--allow-http-registry']), out, err };
  }
  const reg = () => env.registry.host;

  test('a Flux artifact signed with a key, a keyless-signed Helm chart: verified, exit 0', async () => {
    const a = await pushFluxArtifact(env.target, 'cli/flux', '1.0.0');
    await signWithKey('cli/flux', a);
    const f = await verify([`${reg()}/cli/flux:1.0.0`, '--key', env.keys.p256.path, '--insecure-ignore-tlog']);
    assert.equal(f.code, 0, f.err + f.out);
    assert.match(f.out, new RegExp(`^verified: ${reg()}/cli/flux@${a.digest}`));
    const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
    const c = await pushHelmChart(env.target, 'cli', 'chart', '1.0.0+rc.1');
    await pushLegacySignature(env.target, c.repository, c.digest, [legacyLayer(id, c.digest, { rekor: env.sigstore })]);
    const k = await verify([`${reg()}/cli/chart:${c.tag}`, '--certificate-identity', SUBJECT, '--certificate-oidc-issuer', ISSUER, '--trusted-root', env.sigstore.trustedRootPath]);
    assert.equal(k.code, 0, k.err + k.out);
    assert.match(k.out, new RegExp(`signer: ${SUBJECT.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
  });

  test('an unsigned artifact by digest: exit 1, without the hint meant for platform manifests of an index', async () => {
    const a = await pushFluxArtifact(env.target, 'cli/unsigned', '1.0.0');
    const r = await verify([`${reg()}/cli/unsigned@${a.digest}`, '--key', env.keys.p256.path, '--insecure-ignore-tlog']);
    assert.equal(r.code, 1, r.err + r.out);
    assert.match(r.out, /no signature found/);
    assert.doesNotMatch(r.out, /platform manifest|TAG@/);
  });
});
