import assert from 'node:assert/strict';
import { cp, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { loadVerifier } from '../../src/app.js';
import { createLogger } from '../../src/audit/logger.js';
import { Metrics } from '../../src/audit/metrics.js';
import { storeOnly } from '../../src/registry/compose.js';
import { isSigilError } from '../../src/errors.js';
import { cacheCommand } from '../../src/cli/cache.js';
import type { CliIo } from '../../src/cli/io.js';
import { mirrorCommand } from '../../src/cli/mirror.js';
import { UsageError } from '../../src/cli/args.js';
import { StoreWalker } from '../../src/mirror/inventory.js';
import type { Config } from '../../src/config/types.js';
import { ManifestGate } from '../../src/gate/manifest-gate.js';
import type { Digest } from '../../src/oci/digest.js';
import { Catalog, ContentStore, type VerdictRecord } from '../../src/store/index.js';
import type { Registry } from '../../src/oci/registry.js';
import { tempDir } from '../helpers/temp.js';
import { pushBundleReferrer, pushLegacySignature } from '../helpers/publish.js';
import { makeLayer, pushIndex, type PushedImage, type PushedIndex } from '../helpers/push.js';
import { compileConfig, startSigil } from '../helpers/sigil.js';
import { bundleFor, legacyLayer } from '../helpers/signer.js';
import { skopeoCopyToDir } from '../helpers/skopeo.js';
import { ISSUER, SUBJECT, pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';
import { sha256 } from '../helpers/digest.js';
import { collect } from '../helpers/stream.js';

// `sigil mirror` against a real registry with real signatures: what is verified is copied with
// its signature data, what is not is reported and left out; the store then verifies and serves
// it with the registry gone; an exported OCI layout is read by skopeo and imported elsewhere
// with the same catalog records; `sigil cache ls/prune` list and remove whole images.
const RECORD_NAMESPACES = ['tag', 'manifest', 'blob', 'referrers'] as const;

let env: VerifyEnv;
let dir: string;
let storeDir: string;
let layoutDir: string;
let cfgPath: string;
let configText: string;
let config: Config;
let app: PushedImage;
let multi: PushedIndex;
let keyless: PushedImage;
let unsigned: PushedImage;
let badsig: PushedImage;
let tool: PushedImage;
let keylessReferrer: string;
let mirrorRun: { code: number; out: string; err: string; json: { results: Array<Record<string, unknown>>; export?: Record<string, unknown> } };

function capture(): { io: CliIo; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return { io: { env: {}, cwd: dir, stdout: (t) => void (out += t), stderr: (t) => void (err += t) }, out: () => out, err: () => err };
}

function configFor(store: string): string {
  return configText.replace('__STORE__', store);
}

async function withStore<T>(path: string, fn: (catalog: Catalog, store: ContentStore) => Promise<T>): Promise<T> {
  const store = await ContentStore.open({ dir: path, maxBytes: Number.MAX_SAFE_INTEGER });
  try {
    return await fn(new Catalog(store), store);
  } finally {
    await store.close();
  }
}

/** Every catalog record but verdicts, `updated` times left out. */
async function records(path: string): Promise<Record<string, Record<string, unknown>>> {
  return withStore(path, async (_c, store) => {
    const out: Record<string, Record<string, unknown>> = {};
    for (const ns of RECORD_NAMESPACES) out[ns] = Object.fromEntries((await store.listMeta(ns)).map((r) => [r.key, r.value]));
    return out;
  });
}

function sigTag(d: string): string {
  return `${d.replace(':', '-')}.sig`;
}

before(async () => {
  env = await startVerifyEnv();
  dir = await tempDir('sigil-mirror-store-');
  storeDir = join(dir, 'store');
  layoutDir = join(dir, 'layout');
  configText = [
    'upstreams:',
    '  - name: reg.test',
    `    url: ${env.registry.url}`,
    'defaultUpstream: reg.test',
    'trust:',
    `  trustedRoot: [public-good, ${env.sigstore.trustedRootPath}]`,
    'policies:',
    '  - name: prod',
    '    match: ["reg.test/prod/**"]',
    '    mode: enforce',
    '    authorities:',
    `      - { key: ${env.keys.p256.path}, tlog: ignore }`,
    `      - keyless: { issuer: "${ISSUER}", subjectRegExp: "^https://github\\\\.com/acme/app/.+$" }`,
    '  - name: lab',
    '    match: ["reg.test/lab/**"]',
    '    mode: "off"',
    'cache:',
    '  store:',
    '    dir: __STORE__',
    '    maxBytes: 1073741824',
    '',
  ].join('\n');
  cfgPath = join(dir, 'sigil.yaml');
  await writeFile(cfgPath, configFor(storeDir));
  config = await compileConfig(configFor(storeDir));

  app = await env.push('prod/app', '1.0', { layers: [makeLayer(Buffer.from('mirrored app\n'), 'etc/app.txt').blob, makeLayer(Buffer.from('second layer\n'), 'etc/two.txt').blob] });
  await pushLegacySignature(env.target, 'prod/app', app.digest, [legacyLayer(env.keys.p256, app.digest)]);
  multi = await pushIndex(env.target, 'prod/multi', '2.0', [
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64' },
  ]);
  await pushLegacySignature(env.target, 'prod/multi', multi.digest, [legacyLayer(env.keys.p256, multi.digest)]);
  keyless = await env.push('prod/keyless', '1.0');
  const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
  keylessReferrer = await pushBundleReferrer(
    env.target,
    'prod/keyless',
    { digest: keyless.digest, size: keyless.manifest.length, mediaType: keyless.mediaType },
    bundleFor(id, keyless.digest, { rekor: env.sigstore }),
  );
  unsigned = await env.push('prod/unsigned', '1.0');
  badsig = await env.push('prod/badsig', '1.0');
  await pushLegacySignature(env.target, 'prod/badsig', badsig.digest, [legacyLayer(env.stranger, badsig.digest)]);
  tool = await env.push('lab/tool', '1.0');

  const file = join(dir, 'mirror.yaml');
  await writeFile(
    file,
    [
      'images:',
      '  - image: reg.test/prod/app',
      '    tags: ["1.0"]',
      '  - image: reg.test/prod/multi',
      '    tags: ["2.0"]',
      '    platforms: [linux/amd64]',
      '  - image: reg.test/prod/keyless',
      '    tags: ["1.0"]',
      '  - image: reg.test/prod/unsigned',
      '    tags: ["1.0"]',
      '  - image: reg.test/prod/badsig',
      '    tags: ["1.0"]',
      '  - image: reg.test/lab/tool',
      '    tags: ["1.0"]',
      '',
    ].join('\n'),
  );
  const c = capture();
  const code = await mirrorCommand(c.io, [file, '--config', cfgPath, '--export', layoutDir, '--json']);
  mirrorRun = { code, out: c.out(), err: c.err(), json: JSON.parse(c.out() || '{}') };
});
after(async () => {
  await env?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('sigil mirror into the content store', () => {
  test('verified images are mirrored, unsigned and wrongly signed ones under enforce are denied and reported (exit 1)', () => {
    assert.equal(mirrorRun.code, 1, mirrorRun.err);
    const by = Object.fromEntries(mirrorRun.json.results.map((r) => [r.image, r]));
    assert.equal(by['reg.test/prod/app'].status, 'verified');
    assert.equal(by['reg.test/prod/app'].signer, env.keys.p256.keyId);
    assert.equal(by['reg.test/prod/app'].digest, app.digest);
    assert.equal(by['reg.test/prod/multi'].status, 'verified');
    assert.equal(by['reg.test/prod/keyless'].status, 'verified');
    assert.equal(by['reg.test/prod/keyless'].signer, `${SUBJECT} (issuer ${ISSUER})`);
    assert.equal(by['reg.test/prod/unsigned'].status, 'denied');
    assert.match(String(by['reg.test/prod/unsigned'].reason), /no signature found \(policy prod, enforce\)/);
    assert.equal(by['reg.test/prod/badsig'].status, 'denied');
    assert.match(String(by['reg.test/prod/badsig'].reason), /no valid signature/);
    assert.equal(by['reg.test/lab/tool'].status, 'unverified');
    assert.match(String(by['reg.test/lab/tool'].reason), /policy lab has mode off/);
    // one progress line per image on stderr
    for (const img of ['prod/app', 'prod/multi', 'prod/keyless', 'prod/unsigned', 'prod/badsig', 'lab/tool']) {
      assert.match(mirrorRun.err, new RegExp(`^\\[\\d/6\\] reg\\.test/${img.replace('/', '\\/')}:\\S+ (verified|unverified|denied)`, 'm'));
    }
    assert.match(mirrorRun.err, /denied sha256:[a-f0-9]{64}: no signature found/);
  });

  test('everything mirrored is in the store with its catalog records; nothing of the denied images is', async () => {
    await withStore(storeDir, async (catalog, store) => {
      const tag = await catalog.getTag('reg.test', 'prod/app', '1.0');
      assert.equal(tag?.value.digest, app.digest);
      assert.deepEqual((await catalog.getManifest('reg.test', 'prod/app', app.digest as Digest))?.bytes, app.manifest);
      for (const d of [app.config, ...app.layers]) assert.ok(await catalog.hasBlob('reg.test', 'prod/app', d.digest as Digest), d.digest);
      // the cosign .sig manifest, its tag and its blobs
      const sig = await catalog.getTag('reg.test', 'prod/app', sigTag(app.digest));
      assert.ok(sig, 'the .sig tag is recorded');
      const sigDoc = JSON.parse((await catalog.getManifest('reg.test', 'prod/app', sig.value.digest))!.bytes.toString()) as { config: { digest: Digest }; layers: Array<{ digest: Digest }> };
      for (const d of [sigDoc.config, ...sigDoc.layers]) assert.ok(await catalog.hasBlob('reg.test', 'prod/app', d.digest));
      // an index: the index, the wanted platform's child and its blobs; not the other child
      assert.equal((await catalog.getTag('reg.test', 'prod/multi', '2.0'))?.value.digest, multi.digest);
      const [amd64, arm64] = multi.children;
      assert.ok(await catalog.getManifest('reg.test', 'prod/multi', amd64.digest as Digest));
      for (const d of [amd64.config, ...amd64.layers]) assert.ok(await catalog.hasBlob('reg.test', 'prod/multi', d.digest as Digest));
      assert.equal(await store.has(arm64.digest as Digest), false);
      assert.equal(await store.has(arm64.layers[0].digest as Digest), false);
      // a Sigstore bundle referrer: the referrer, its blobs, the fallback index and the referrers record
      const refs = (await catalog.getReferrers('reg.test', 'prod/keyless', keyless.digest as Digest)) as Array<{ digest: string; artifactType: string }>;
      assert.deepEqual(refs.map((r) => [r.digest, r.artifactType]), [[keylessReferrer, 'application/vnd.dev.sigstore.bundle.v0.3+json']]);
      assert.ok(await catalog.getManifest('reg.test', 'prod/keyless', keylessReferrer as Digest));
      assert.ok(await catalog.getTag('reg.test', 'prod/keyless', keyless.digest.replace(':', '-')), 'the referrers fallback tag');
      // a verdict, the record serve's keeper writes
      const policy = config.policies.find((p) => p.name === 'prod')!;
      const verdict = (await catalog.records('verdict')).find((v) => v.ref.repository === 'prod/app' && v.ref.digest === app.digest && v.ref.policyFingerprint === policy.fingerprint);
      assert.equal((verdict?.value as VerdictRecord | undefined)?.outcome.kind, 'verified');
      // unverified under enforce: not a byte stored
      for (const img of [unsigned, badsig]) {
        assert.equal(await store.has(img.digest as Digest), false);
        for (const l of img.layers) assert.equal(await store.has(l.digest as Digest), false);
      }
      assert.equal(await catalog.getTag('reg.test', 'prod/unsigned', '1.0'), null);
      // mode off: copied anyway
      assert.equal((await catalog.getTag('reg.test', 'lab/tool', '1.0'))?.value.digest, tool.digest);
    });
  });

  test('a second run finds everything stored and downloads nothing new', async () => {
    const file = join(dir, 'again.yaml');
    await writeFile(file, 'images:\n  - image: reg.test/prod/app\n    tags: ["1.0"]\n');
    const c = capture();
    assert.equal(await mirrorCommand(c.io, [file, '--config', cfgPath, '--json']), 0, c.err());
    const [r] = (JSON.parse(c.out()) as { results: Array<{ newBytes: number; bytes: number; objects: number }> }).results;
    assert.equal(r.newBytes, 0);
    assert.equal(r.objects, 7); // manifest, config, 2 layers; .sig manifest, config, payload
    assert.ok(r.bytes > 0);
  });
});

describe('the export, read by skopeo and imported into another store', () => {
  test('index.json names every tag as <upstream>/<repo>:<tag> and every bundle referrer as …@<digest>', async () => {
    assert.ok(mirrorRun.json.export && !('error' in mirrorRun.json.export), JSON.stringify(mirrorRun.json.export));
    assert.deepEqual(JSON.parse(await readFile(join(layoutDir, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(await readFile(join(layoutDir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
    const refs = index.manifests.map((m) => m.annotations['org.opencontainers.image.ref.name']).sort();
    assert.deepEqual(
      refs,
      [
        'reg.test/lab/tool:1.0',
        'reg.test/prod/app:1.0',
        `reg.test/prod/app:${sigTag(app.digest)}`,
        'reg.test/prod/keyless:1.0',
        `reg.test/prod/keyless:${keyless.digest.replace(':', '-')}`,
        `reg.test/prod/keyless@${keylessReferrer}`,
        'reg.test/prod/multi:2.0',
        `reg.test/prod/multi:${sigTag(multi.digest)}`,
      ].sort(),
    );
    // every blob file hashes to its name
    for (const name of await readdir(join(layoutDir, 'blobs', 'sha256'))) {
      assert.equal(sha256(await readFile(join(layoutDir, 'blobs', 'sha256', name))), `sha256:${name}`);
    }
  });

  test('skopeo copies an image, an index (its platform) and a signature artifact out of the layout by ref name', async () => {
    const out = join(dir, 'skopeo-app');
    const r = await skopeoCopyToDir(`oci:${layoutDir}:reg.test/prod/app:1.0`, out);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await readFile(join(out, 'manifest.json')), app.manifest);
    for (const l of app.layers) assert.equal(sha256(await readFile(join(out, l.digest.slice(7)))), l.digest);
    const outMulti = join(dir, 'skopeo-multi');
    const m = await skopeoCopyToDir(`oci:${layoutDir}:reg.test/prod/multi:2.0`, outMulti, { platform: 'linux/amd64' });
    assert.equal(m.code, 0, m.stderr);
    assert.deepEqual(await readFile(join(outMulti, 'manifest.json')), multi.children[0].manifest);
    const outSig = join(dir, 'skopeo-sig');
    const s = await skopeoCopyToDir(`oci:${layoutDir}:reg.test/prod/app:${sigTag(app.digest)}`, outSig);
    assert.equal(s.code, 0, s.stderr);
    const sigManifest = JSON.parse(await readFile(join(outSig, 'manifest.json'), 'utf8')) as { layers: Array<{ mediaType: string }> };
    assert.equal(sigManifest.layers[0].mediaType, 'application/vnd.dev.cosign.simplesigning.v1+json');
  });

  test('--import into a fresh store writes the same catalog records', async () => {
    const fresh = join(dir, 'store-imported');
    const cfg2 = join(dir, 'sigil-imported.yaml');
    await writeFile(cfg2, configFor(fresh));
    const c = capture();
    const code = await mirrorCommand(c.io, ['--import', layoutDir, '--config', cfg2]);
    assert.equal(code, 0, c.err() + c.out());
    assert.match(c.out(), /^REF\s+DIGEST\s+STATUS\s+SIGNER\s+OBJECTS\s+NOTE$/m);
    // verified again from the imported signatures: the three prod images; lab/tool unverified; the signature data as such
    assert.match(c.out(), /8 ref\(s\): 3 verified, 1 unverified, 4 signature, 0 denied, 0 failed/);
    assert.match(c.out(), new RegExp(`^reg\\.test/prod/app:${sigTag(app.digest)}\\s+sha256:[a-f0-9]{12}\\s+signature\\s+-\\s+\\d+\\s+signature data of ${app.digest}$`, 'm'));
    assert.match(c.out(), new RegExp(`^reg\\.test/prod/app:1\\.0\\s+sha256:[a-f0-9]{12}\\s+verified\\s+${env.keys.p256.keyId}\\s+4\\s`, 'm'));
    assert.match(c.err(), /^verified reg\.test\/prod\/keyless:1\.0 sha256:[a-f0-9]{64} \(3 objects, .* new\) signed by https:\/\/github\.com\/acme/m);
    assert.match(c.err(), /^unverified reg\.test\/lab\/tool:1\.0 .*policy lab has mode off$/m);
    assert.deepEqual(await records(fresh), await records(storeDir));
    // the verdicts, the records serve's keeper writes
    const policy = config.policies.find((p) => p.name === 'prod')!;
    await withStore(fresh, async (catalog) => {
      const verdicts = await catalog.records('verdict');
      for (const [repo, d] of [['prod/app', app.digest], ['prod/multi', multi.digest], ['prod/keyless', keyless.digest]]) {
        const verdict = verdicts.find((v) => v.ref.upstream === 'reg.test' && v.ref.repository === repo && v.ref.digest === d && v.ref.policyFingerprint === policy.fingerprint);
        assert.equal((verdict?.value as VerdictRecord | undefined)?.outcome.kind, 'verified', repo);
      }
    });
    // importing again changes nothing and stores nothing new
    const again = capture();
    assert.equal(await mirrorCommand(again.io, ['--import', layoutDir, '--config', cfg2, '--json']), 0);
    assert.ok((JSON.parse(again.out()) as { results: Array<{ newBytes: number }> }).results.every((r) => r.newBytes === 0));
  });

  test('--import checks every digest: a damaged layer fails its image, which gets no tag', async () => {
    const damaged = join(dir, 'layout-damaged');
    await cp(layoutDir, damaged, { recursive: true });
    const layer = join(damaged, 'blobs', 'sha256', app.layers[1].digest.slice(7));
    const bytes = await readFile(layer);
    bytes[bytes.length - 1] ^= 0xff;
    await writeFile(layer, bytes);
    const fresh = join(dir, 'store-damaged');
    const cfg3 = join(dir, 'sigil-damaged.yaml');
    await writeFile(cfg3, configFor(fresh));
    const c = capture();
    assert.equal(await mirrorCommand(c.io, ['--import', damaged, '--config', cfg3, '--json']), 1);
    const results = (JSON.parse(c.out()) as { results: Array<{ ref: string; status: string; reason?: string }> }).results;
    const appResult = results.find((r) => r.ref === 'reg.test/prod/app:1.0');
    assert.equal(appResult?.status, 'failed');
    assert.match(appResult?.reason ?? '', /DIGEST_MISMATCH/);
    // its signature data goes with it; everything else is imported
    const appSig = results.find((r) => r.ref === `reg.test/prod/app:${sigTag(app.digest)}`);
    assert.equal(appSig?.status, 'denied');
    assert.match(appSig?.reason ?? '', /signature data of sha256:[a-f0-9]{64}, which is not imported/);
    assert.ok(results.filter((r) => !r.ref.startsWith('reg.test/prod/app:')).every((r) => ['verified', 'unverified', 'signature'].includes(r.status)), JSON.stringify(results));
    await withStore(fresh, async (catalog, store) => {
      assert.equal(await catalog.getTag('reg.test', 'prod/app', '1.0'), null);
      assert.equal(await catalog.getTag('reg.test', 'prod/app', sigTag(app.digest)), null);
      assert.equal(await store.getMeta('manifest', `reg.test/prod/app@${app.digest}`), null);
      // nothing of the failed image stays: not the damaged layer, not what was read before it
      for (const d of [app.digest, app.config.digest, ...app.layers.map((l) => l.digest)]) assert.equal(await store.has(d as Digest), false, d);
      assert.deepEqual(await store.listMeta('blob').then((all) => all.filter((r) => r.key.startsWith('reg.test/prod/app@'))), []);
      assert.ok(await catalog.getTag('reg.test', 'prod/multi', '2.0'));
    });
    // not a layout at all
    const none = capture();
    assert.equal(await mirrorCommand(none.io, ['--import', dir, '--config', cfg3]), 2);
    assert.match(none.err(), /not an OCI image layout/);
  });
});

describe('--import verifies each tag as serve --offline would', () => {
  // A layout written under a permissive config (prod: mode off) holds a signed image, an unsigned
  // one, a wrongly signed one with its .sig, and an unsigned one sharing a layer with the signed one.
  let mixedLayout: string;
  let shared: PushedImage;
  let enforceStore: string;
  let enforceRun: { code: number; err: string; results: Array<{ ref: string; status: string; reason?: string; signer?: string; digest?: string }> };
  const byRef = (ref: string) => enforceRun.results.find((r) => r.ref === ref);

  async function importInto(store: string, text: string): Promise<typeof enforceRun> {
    const cfg = join(dir, `sigil-${store.split('/').pop()}.yaml`);
    await writeFile(cfg, text.replace('__STORE__', store));
    const c = capture();
    const code = await mirrorCommand(c.io, ['--import', mixedLayout, '--config', cfg, '--json']);
    return { code, err: c.err(), results: (JSON.parse(c.out() || '{"results":[]}') as { results: typeof enforceRun.results }).results };
  }

  before(async () => {
    shared = await env.push('prod/shared', '1.0', { layers: [makeLayer(Buffer.from('mirrored app\n'), 'etc/app.txt').blob] });
    assert.equal(shared.layers[0].digest, app.layers[0].digest, 'the same layer as prod/app');
    const permissive = join(dir, 'sigil-permissive.yaml');
    await writeFile(permissive, configFor(join(dir, 'store-permissive')).replace('mode: enforce', 'mode: "off"'));
    const file = join(dir, 'mixed.yaml');
    await writeFile(file, ['images:', ...['prod/app', 'prod/unsigned', 'prod/badsig', 'prod/shared', 'lab/tool'].map((r) => `  - { image: reg.test/${r}, tags: ["1.0"] }`), ''].join('\n'));
    mixedLayout = join(dir, 'layout-mixed');
    const c = capture();
    assert.equal(await mirrorCommand(c.io, [file, '--config', permissive, '--export', mixedLayout]), 0, c.err());
    enforceStore = join(dir, 'store-enforce');
    enforceRun = await importInto(enforceStore, configText);
  });

  test('under enforce: the signed image is verified, the others and their signature data are denied (exit 1)', () => {
    assert.equal(enforceRun.code, 1, enforceRun.err);
    assert.equal(byRef('reg.test/prod/app:1.0')?.status, 'verified');
    assert.equal(byRef('reg.test/prod/app:1.0')?.signer, env.keys.p256.keyId);
    assert.equal(byRef(`reg.test/prod/app:${sigTag(app.digest)}`)?.status, 'signature');
    assert.equal(byRef('reg.test/lab/tool:1.0')?.status, 'unverified');
    assert.equal(byRef('reg.test/prod/unsigned:1.0')?.status, 'denied');
    assert.match(byRef('reg.test/prod/unsigned:1.0')?.reason ?? '', /no signature found \(policy prod, enforce\)/);
    assert.equal(byRef('reg.test/prod/badsig:1.0')?.status, 'denied');
    assert.match(byRef('reg.test/prod/badsig:1.0')?.reason ?? '', /no valid signature/);
    assert.equal(byRef(`reg.test/prod/badsig:${sigTag(badsig.digest)}`)?.status, 'denied');
    assert.equal(byRef('reg.test/prod/shared:1.0')?.status, 'denied');
    assert.equal(enforceRun.results.length, 7);
    assert.match(enforceRun.err, /^denied reg\.test\/prod\/unsigned:1\.0 sha256:[a-f0-9]{64}: no signature found/m);
  });

  test('nothing of a denied image stays in the catalog; its objects go unless a kept image has them', async () => {
    await withStore(enforceStore, async (catalog, store) => {
      for (const [repo, img] of [['prod/unsigned', unsigned], ['prod/badsig', badsig], ['prod/shared', shared]] as const) {
        assert.equal(await catalog.getTag('reg.test', repo, '1.0'), null, repo);
        assert.equal(await catalog.getManifest('reg.test', repo, img.digest as Digest), null, repo);
        assert.equal(await store.has(img.digest as Digest), false, repo);
        assert.deepEqual((await store.listMeta('blob')).filter((r) => r.key.startsWith(`reg.test/${repo}@`)), [], repo);
      }
      for (const l of [...unsigned.layers, ...badsig.layers]) assert.equal(await store.has(l.digest as Digest), false);
      assert.equal(await catalog.getTag('reg.test', 'prod/badsig', sigTag(badsig.digest)), null);
      // prod/app keeps the layer prod/shared had too
      assert.ok(await catalog.hasBlob('reg.test', 'prod/app', app.layers[0].digest as Digest));
      assert.equal(await catalog.hasBlob('reg.test', 'prod/shared', app.layers[0].digest as Digest), false);
      // what was not denied is there, with its tag
      assert.equal((await catalog.getTag('reg.test', 'prod/app', '1.0'))?.value.digest, app.digest);
      assert.ok(await catalog.getTag('reg.test', 'prod/app', sigTag(app.digest)));
      assert.equal((await catalog.getTag('reg.test', 'lab/tool', '1.0'))?.value.digest, tool.digest);
    });
  });

  test('served offline: only the signed image (and the mode-off one); the gate over the store agrees', async () => {
    const s = await startSigil(configFor(enforceStore), { offline: true });
    try {
      const ok = await pull(s, 'prod/app', '1.0');
      assert.equal(ok.status, 200, ok.body.toString());
      assert.equal(ok.headers['sigil-verification'], 'verified');
      assert.deepEqual(ok.body, app.manifest);
      assert.equal((await pull(s, 'lab/tool', '1.0')).status, 200);
      for (const [repo, img] of [['prod/unsigned', unsigned], ['prod/badsig', badsig], ['prod/shared', shared]] as const) {
        assert.equal((await pull(s, repo, '1.0')).status, 404, repo);
        assert.equal((await pull(s, repo, img.digest)).status, 404, repo);
        const blob = await request(`${s.url}/v2/${repo}/blobs/${img.layers[0].digest}`);
        await blob.body.dump();
        assert.equal(blob.statusCode, 404, `${repo} layer`);
      }
      const appLayer = await request(`${s.url}/v2/prod/app/blobs/${app.layers[0].digest}`);
      assert.equal(sha256(Buffer.from(await appLayer.body.arrayBuffer())), app.layers[0].digest);
    } finally {
      await s.stop();
    }
    await withStore(enforceStore, async (catalog, content) => {
      const clients = new Map<string, Registry>([['reg.test', storeOnly('reg.test', { content, catalog })]]);
      const gate = new ManifestGate({ config, clients, metrics: new Metrics(), logger: createLogger('silent'), verifier: loadVerifier(config) });
      assert.equal((await gate.evaluate({ upstream: 'reg.test', repository: 'prod/app', reference: '1.0' })).outcome?.kind, 'verified');
      await assert.rejects(gate.evaluate({ upstream: 'reg.test', repository: 'prod/unsigned', reference: '1.0' }), (e: unknown) => isSigilError(e) && e.code === 'MANIFEST_UNKNOWN');
    });
  });

  test('under warn the same: what does not verify is denied', async () => {
    const warn = await importInto(join(dir, 'store-warn'), configText.replace('mode: enforce', 'mode: warn'));
    assert.equal(warn.code, 1, warn.err);
    const by = (ref: string) => warn.results.find((r) => r.ref === ref);
    assert.equal(by('reg.test/prod/app:1.0')?.status, 'verified');
    assert.equal(by('reg.test/prod/unsigned:1.0')?.status, 'denied');
    assert.match(by('reg.test/prod/unsigned:1.0')?.reason ?? '', /\(policy prod, warn\)/);
    await withStore(join(dir, 'store-warn'), async (catalog) => {
      assert.equal(await catalog.getTag('reg.test', 'prod/unsigned', '1.0'), null);
      assert.ok(await catalog.getTag('reg.test', 'prod/app', '1.0'));
    });
  });

  test('importing the same layout again keeps the denied images out and what was stored in', async () => {
    const again = await importInto(enforceStore, configText);
    assert.equal(again.code, 1);
    assert.deepEqual(again.results.map((r) => [r.ref, r.status]), enforceRun.results.map((r) => [r.ref, r.status]));
    await withStore(enforceStore, async (catalog, store) => {
      assert.equal((await catalog.getTag('reg.test', 'prod/app', '1.0'))?.value.digest, app.digest);
      assert.ok(await store.has(app.layers[0].digest as Digest));
      assert.equal(await store.has(unsigned.digest as Digest), false);
    });
  });
});

describe('--import keeps signature data only when its content is signature data and its subject is kept', () => {
  // The export plus what a hostile layout may carry: a runnable unsigned image tagged as the
  // cosign signature of an image that is not there; one shaped like a signature artifact (its
  // layer labelled a cosign payload, its config running a shell) tagged as the signature of an
  // image that is (prod/multi's amd64 child); a referrers fallback tag of prod/app whose index
  // lists a runnable image (it names prod/app as its subject); and prod/app's genuine signature
  // manifest tagged again as the signature of an image that is not there.
  let hostileLayout: string;
  let hostileStore: string;
  let run: { code: number; err: string; results: Array<{ ref: string; status: string; reason?: string; digest?: string }> };
  let evil: { manifest: string; blobs: string[]; tag: string };
  let disguised: { manifest: string; blobs: string[]; tag: string };
  let referrer: { manifest: string; blobs: string[] };
  let fallbackRef: string;
  let orphanSigRef: string;
  let absent: string;
  const byRef = (ref: string) => run.results.find((r) => r.ref === ref);

  async function writeBlob(layout: string, bytes: Buffer): Promise<string> {
    const digest = sha256(bytes);
    await writeFile(join(layout, 'blobs', 'sha256', digest.slice(7)), bytes);
    return digest;
  }

  /** A runnable image (a gzipped tar with a shell script, a config that runs it) written into the layout. */
  async function runnableImage(
    layout: string,
    script: string,
    opts: { subject?: { mediaType: string; digest: string; size: number }; layerType?: string } = {},
  ): Promise<{ manifest: Buffer; digest: string; blobs: string[] }> {
    const layer = makeLayer(Buffer.from(script), 'bin/run.sh');
    const subject = opts.subject;
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/sh', '/bin/run.sh'] }, rootfs: { type: 'layers', diff_ids: [layer.diffId] } }));
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await writeBlob(layout, config), size: config.length },
        layers: [{ mediaType: opts.layerType ?? 'application/vnd.oci.image.layer.v1.tar+gzip', digest: await writeBlob(layout, layer.blob), size: layer.blob.length }],
        ...(subject ? { subject } : {}),
      }),
    );
    return { manifest, digest: await writeBlob(layout, manifest), blobs: [sha256(config), layer.digest] };
  }

  async function addRefs(layout: string, refs: Array<{ ref: string; mediaType: string; digest: string; size: number }>): Promise<void> {
    const path = join(layout, 'index.json');
    const index = JSON.parse(await readFile(path, 'utf8')) as { manifests: unknown[] };
    for (const r of refs) index.manifests.push({ mediaType: r.mediaType, digest: r.digest, size: r.size, annotations: { 'org.opencontainers.image.ref.name': r.ref } });
    await writeFile(path, JSON.stringify(index));
  }

  async function importLayout(layout: string, store: string): Promise<typeof run> {
    const cfg = join(dir, `sigil-${store.split('/').pop()}.yaml`);
    await writeFile(cfg, configFor(store));
    const c = capture();
    const code = await mirrorCommand(c.io, ['--import', layout, '--config', cfg, '--json']);
    return { code, err: c.err(), results: (JSON.parse(c.out() || '{"results":[]}') as { results: typeof run.results }).results };
  }

  before(async () => {
    hostileLayout = join(dir, 'layout-hostile');
    await cp(layoutDir, hostileLayout, { recursive: true });
    absent = sha256(Buffer.from('an image that is in no layout and no store'));
    const image = await runnableImage(hostileLayout, '#!/bin/sh\necho unsigned and runnable\n');
    evil = { manifest: image.digest, blobs: image.blobs, tag: sigTag(absent) };
    const shaped = await runnableImage(hostileLayout, '#!/bin/sh\necho shaped like a signature\n', { layerType: 'application/vnd.dev.cosign.simplesigning.v1+json' });
    disguised = { manifest: shaped.digest, blobs: shaped.blobs, tag: sigTag(multi.children[0].digest) };
    const ref = await runnableImage(hostileLayout, '#!/bin/sh\necho a runnable referrer\n', { subject: { mediaType: app.mediaType, digest: app.digest, size: app.manifest.length } });
    referrer = { manifest: ref.digest, blobs: ref.blobs };
    const fallback = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: ref.digest, size: ref.manifest.length, artifactType: 'application/vnd.oci.image.config.v1+json' }],
      }),
    );
    fallbackRef = `reg.test/prod/app:${app.digest.replace(':', '-')}`;
    const genuineSig = await withStore(storeDir, async (catalog) => (await catalog.getTag('reg.test', 'prod/app', sigTag(app.digest)))!.value);
    const genuineSigSize = (await readFile(join(hostileLayout, 'blobs', 'sha256', genuineSig.digest.slice(7)))).length;
    orphanSigRef = `reg.test/prod/app:${sigTag(sha256(Buffer.from('another image that is nowhere')))}`;
    await addRefs(hostileLayout, [
      { ref: `reg.test/prod/evil:${evil.tag}`, mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: image.digest, size: image.manifest.length },
      { ref: `reg.test/prod/multi:${disguised.tag}`, mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: shaped.digest, size: shaped.manifest.length },
      { ref: fallbackRef, mediaType: 'application/vnd.oci.image.index.v1+json', digest: await writeBlob(hostileLayout, fallback), size: fallback.length },
      { ref: orphanSigRef, mediaType: genuineSig.mediaType, digest: genuineSig.digest, size: genuineSigSize },
    ]);
    hostileStore = join(dir, 'store-hostile');
    run = await importLayout(hostileLayout, hostileStore);
  });

  test('a runnable image tagged as the signature of an absent image is not imported, with its reason, and the import exits 1', async () => {
    assert.equal(run.code, 1, run.err);
    const r = byRef(`reg.test/prod/evil:${evil.tag}`);
    assert.equal(r?.status, 'denied', JSON.stringify(r));
    assert.equal(r?.digest, evil.manifest);
    assert.match(r?.reason ?? '', /not signature data/);
    assert.match(r?.reason ?? '', /no signature found \(policy prod, enforce\)/);
    assert.match(run.err, new RegExp(`^denied reg\\.test/prod/evil:${evil.tag.replace('.', '\\.')} ${evil.manifest}: `, 'm'));
    // the export's own entries are imported as before
    const own = run.results.filter((x) => ![`reg.test/prod/evil:${evil.tag}`, `reg.test/prod/multi:${disguised.tag}`, fallbackRef, orphanSigRef].includes(x.ref));
    assert.equal(own.length, 8);
    assert.ok(own.every((x) => ['verified', 'unverified', 'signature'].includes(x.status)), JSON.stringify(own));
    await withStore(hostileStore, async (catalog, store) => {
      assert.equal(await catalog.getTag('reg.test', 'prod/evil', evil.tag), null);
      assert.equal(await store.getMeta('manifest', `reg.test/prod/evil@${evil.manifest}`), null);
      for (const d of [evil.manifest, ...evil.blobs]) assert.equal(await store.has(d as Digest), false, d);
      assert.deepEqual((await store.listMeta('blob')).filter((b) => b.key.startsWith('reg.test/prod/evil@')), []);
    });
  });

  test('one shaped like a signature artifact whose content is not signature data is judged like any image, its subject there or not', async () => {
    const r = byRef(`reg.test/prod/multi:${disguised.tag}`);
    assert.equal(r?.status, 'denied', JSON.stringify(r));
    assert.match(r?.reason ?? '', /not signature data \((config|layer 0): /);
    assert.match(r?.reason ?? '', /no signature found \(policy prod, enforce\)/);
    await withStore(hostileStore, async (catalog, store) => {
      assert.equal(await catalog.getTag('reg.test', 'prod/multi', disguised.tag), null);
      for (const d of [disguised.manifest, ...disguised.blobs]) assert.equal(await store.has(d as Digest), false, d);
      // its subject, imported and verified, is there
      assert.ok(await catalog.getManifest('reg.test', 'prod/multi', multi.children[0].digest as Digest));
    });
  });

  test('a referrers fallback tag whose index lists a runnable image is not imported, nor is that image', async () => {
    const r = byRef(fallbackRef);
    assert.equal(r?.status, 'denied', JSON.stringify(r));
    assert.match(r?.reason ?? '', new RegExp(`${referrer.manifest}.*not signature data`));
    await withStore(hostileStore, async (catalog, store) => {
      assert.equal(await catalog.getTag('reg.test', 'prod/app', app.digest.replace(':', '-')), null);
      assert.equal(await catalog.getReferrers('reg.test', 'prod/app', app.digest as Digest), null);
      for (const d of [referrer.manifest, ...referrer.blobs]) assert.equal(await store.has(d as Digest), false, d);
    });
  });

  test('signature data whose subject is neither imported nor stored is not imported', async () => {
    const r = byRef(orphanSigRef);
    assert.equal(r?.status, 'denied', JSON.stringify(r));
    assert.match(r?.reason ?? '', /signature data of sha256:[a-f0-9]{64}, which is not imported/);
    await withStore(hostileStore, async (catalog) => {
      assert.equal(await catalog.getTag('reg.test', 'prod/app', orphanSigRef.slice('reg.test/prod/app:'.length)), null);
      // the same manifest stays as prod/app's own signature
      assert.ok(await catalog.getTag('reg.test', 'prod/app', sigTag(app.digest)));
    });
  });

  test('serve --offline serves none of what was not imported; the signed images still verify from the store', async () => {
    const s = await startSigil(configFor(hostileStore), { offline: true });
    try {
      for (const [repo, ref] of [
        ['prod/evil', evil.tag],
        ['prod/evil', evil.manifest],
        ['prod/multi', disguised.tag],
        ['prod/multi', disguised.manifest],
        ['prod/app', referrer.manifest],
        ['prod/app', fallbackRef.slice('reg.test/prod/app:'.length)],
      ]) {
        const m = await pull(s, repo, ref);
        assert.ok(m.status === 404 || m.status === 403, `${repo} ${ref}: ${m.status}`);
      }
      for (const [repo, d] of [...evil.blobs.map((b) => ['prod/evil', b]), ...disguised.blobs.map((b) => ['prod/multi', b]), ...referrer.blobs.map((b) => ['prod/app', b])]) {
        const blob = await request(`${s.url}/v2/${repo}/blobs/${d}`);
        await blob.body.dump();
        assert.ok(blob.statusCode === 404 || blob.statusCode === 403, `${repo} blob ${d}: ${blob.statusCode}`);
      }
      for (const repo of ['prod/app', 'prod/keyless']) {
        const ok = await pull(s, repo, '1.0');
        assert.equal(ok.status, 200, `${repo}: ${ok.body.toString()}`);
        assert.equal(ok.headers['sigil-verification'], 'verified', repo);
      }
    } finally {
      await s.stop();
    }
  });

  test('signature data of an image already stored and passing is imported on its own; into an empty store it is not', async () => {
    const sigOnly = join(dir, 'layout-sig-only');
    await cp(hostileLayout, sigOnly, { recursive: true });
    const index = JSON.parse(await readFile(join(sigOnly, 'index.json'), 'utf8')) as { manifests: Array<{ annotations: Record<string, string> }> };
    index.manifests = index.manifests.filter((m) => m.annotations['org.opencontainers.image.ref.name'] === `reg.test/prod/app:${sigTag(app.digest)}`);
    assert.equal(index.manifests.length, 1);
    await writeFile(join(sigOnly, 'index.json'), JSON.stringify(index));
    const onto = await importLayout(sigOnly, hostileStore);
    assert.equal(onto.code, 0, onto.err);
    assert.deepEqual(onto.results.map((r) => r.status), ['signature']);
    const empty = await importLayout(sigOnly, join(dir, 'store-sig-only'));
    assert.equal(empty.code, 1, empty.err);
    assert.equal(empty.results[0]?.status, 'denied');
    assert.match(empty.results[0]?.reason ?? '', /signature data of sha256:[a-f0-9]{64}, which is not imported/);
    await withStore(join(dir, 'store-sig-only'), async (catalog, store) => {
      assert.equal(await catalog.getTag('reg.test', 'prod/app', sigTag(app.digest)), null);
      assert.deepEqual((await store.list()).length, 0);
    });
  });
});

describe('with the registry gone', () => {
  before(async () => {
    await env.registry.stop();
  });

  test('the store alone verifies every mirrored image again and serves its blobs', async () => {
    await withStore(storeDir, async (catalog, content) => {
      const clients = new Map<string, Registry>([['reg.test', storeOnly('reg.test', { content, catalog })]]);
      const gate = new ManifestGate({ config, clients, metrics: new Metrics(), logger: createLogger('silent'), verifier: loadVerifier(config) });
      for (const [repo, tag, digest] of [['prod/app', '1.0', app.digest], ['prod/multi', '2.0', multi.digest], ['prod/keyless', '1.0', keyless.digest]]) {
        const ev = await gate.evaluate({ upstream: 'reg.test', repository: repo, reference: tag });
        assert.equal(ev.manifest.digest, digest);
        assert.equal(ev.outcome?.kind, 'verified', `${repo}: ${JSON.stringify(ev.outcome)}`);
      }
      // the child of the verified index passes through it
      const child = await gate.evaluate({ upstream: 'reg.test', repository: 'prod/multi', reference: multi.children[0].digest });
      assert.equal(child.basis, 'index');
      const reg = clients.get('reg.test')!;
      for (const l of app.layers) {
        const res = await reg.openBlob('prod/app', l.digest as Digest, { method: 'GET' });
        assert.equal(sha256(await collect(res.body!)), l.digest);
      }
    });
  });

  test('the imported store verifies offline too', async () => {
    await withStore(join(dir, 'store-imported'), async (catalog, content) => {
      const clients = new Map<string, Registry>([['reg.test', storeOnly('reg.test', { content, catalog })]]);
      const gate = new ManifestGate({ config, clients, metrics: new Metrics(), logger: createLogger('silent'), verifier: loadVerifier(config) });
      const ev = await gate.evaluate({ upstream: 'reg.test', repository: 'prod/keyless', reference: '1.0' });
      assert.equal(ev.outcome?.kind, 'verified', JSON.stringify(ev.outcome));
    });
  });
});

describe('sigil cache ls and prune', () => {
  let pruneDir: string;
  let pruneCfg: string;

  /** Sets the last use (mtime) of every object of a unit. */
  async function age(ref: string, msAgo: number): Promise<void> {
    await withStore(pruneDir, async (catalog, store) => {
      const w = new StoreWalker({ content: store, catalog });
      const { tags } = await w.load();
      const unit = (await w.units(tags)).find((u) => u.ref === ref);
      assert.ok(unit, ref);
      const t = (Date.now() - msAgo) / 1000;
      for (const d of unit.objects.keys()) await utimes(join(pruneDir, 'blobs', 'sha256', d.slice(7)), t, t);
    });
  }

  before(async () => {
    pruneDir = join(dir, 'store-prune');
    await cp(join(dir, 'store-imported'), pruneDir, { recursive: true });
    pruneCfg = join(dir, 'sigil-prune.yaml');
    await writeFile(pruneCfg, configFor(pruneDir));
  });

  test('cache ls lists each stored image with its objects, bytes and last use; nothing is loose', async () => {
    const c = capture();
    assert.equal(await cacheCommand(c.io, ['ls', '--config', pruneCfg, '--json']), 0);
    const inv = JSON.parse(c.out()) as { total: { objects: number; bytes: number }; loose: { objects: number }; tags: Array<{ ref: string; digest: string; objects: number; bytes: number; lastUsed: string; complete: boolean }> };
    assert.deepEqual(inv.tags.map((t) => t.ref), ['reg.test/lab/tool:1.0', 'reg.test/prod/app:1.0', 'reg.test/prod/keyless:1.0', 'reg.test/prod/multi:2.0']);
    const appRow = inv.tags.find((t) => t.ref === 'reg.test/prod/app:1.0')!;
    assert.equal(appRow.digest, app.digest);
    assert.equal(appRow.objects, 7);
    assert.ok(appRow.complete);
    assert.ok(Date.now() - Date.parse(appRow.lastUsed) < 10 * 60_000);
    // keyless: manifest, config, layer, fallback index, referrer, its empty config and bundle
    assert.equal(inv.tags.find((t) => t.ref === 'reg.test/prod/keyless:1.0')!.objects, 7);
    assert.equal(inv.loose.objects, 0);
    assert.equal(inv.tags.reduce((n, t) => n + t.objects, 0) >= inv.total.objects, true);
    const text = capture();
    assert.equal(await cacheCommand(text.io, ['ls', '--config', pruneCfg]), 0);
    assert.match(text.out(), /^TAG\s+DIGEST\s+OBJECTS\s+BYTES\s+LAST USED \(UTC\)/);
    assert.match(text.out(), /^reg\.test\/prod\/app:1\.0\s+sha256:[a-f0-9]{12}\s+7\s+/m);
    assert.match(text.out(), /4 tag\(s\); \d+ object\(s\)/);
  });

  /** Every file under the store with its size and modification time. */
  async function snapshot(): Promise<string[]> {
    const entries = await readdir(pruneDir, { recursive: true, withFileTypes: true });
    const out: string[] = [];
    for (const e of entries.filter((x) => x.isFile())) {
      const path = join(e.parentPath, e.name);
      const st = await stat(path);
      out.push(`${path} ${st.size} ${st.mtimeMs}`);
    }
    return out.sort();
  }

  test('prune --dry-run says what would be removed and removes nothing, not even an abandoned temp file', async () => {
    await age('reg.test/lab/tool:1.0', 30 * 86_400_000);
    const abandoned = join(pruneDir, 'tmp', 'blob.1.abandoned.tmp');
    await writeFile(abandoned, 'half a blob');
    const old = (Date.now() - 7 * 86_400_000) / 1000;
    await utimes(abandoned, old, old);
    const before = await snapshot();
    const c = capture();
    assert.equal(await cacheCommand(c.io, ['prune', '--older-than', '7d', '--dry-run', '--config', pruneCfg]), 0, c.err());
    assert.match(c.out(), /^would remove reg\.test\/lab\/tool:1\.0$/m);
    assert.match(c.out(), /would prune 1 tag\(s\), 3 object\(s\), .*would remain \(dry run: nothing removed\)/);
    const j = capture();
    assert.equal(await cacheCommand(j.io, ['prune', '--max-bytes', '1', '--dry-run', '--json', '--config', pruneCfg]), 0, j.err());
    const plan = JSON.parse(j.out()) as { dryRun: boolean; removedTags: string[]; removedObjects: number; remaining: { objects: number; bytes: number } };
    assert.equal(plan.dryRun, true);
    assert.deepEqual(plan.removedTags, ['reg.test/lab/tool:1.0', 'reg.test/prod/app:1.0', 'reg.test/prod/keyless:1.0', 'reg.test/prod/multi:2.0']);
    assert.deepEqual(plan.remaining, { objects: 0, bytes: 0 });
    assert.deepEqual(await snapshot(), before);
    await withStore(pruneDir, async (catalog) => assert.ok(await catalog.getTag('reg.test', 'lab/tool', '1.0')));
    await rm(abandoned, { force: true });
    await assert.rejects(cacheCommand(capture().io, ['ls', '--dry-run', '--config', pruneCfg]), UsageError);
  });

  test('prune --older-than removes whole images unused that long, and their records', async () => {
    await age('reg.test/lab/tool:1.0', 30 * 86_400_000);
    const c = capture();
    assert.equal(await cacheCommand(c.io, ['prune', '--older-than', '7d', '--config', pruneCfg]), 0, c.err());
    assert.match(c.out(), /^removed reg\.test\/lab\/tool:1\.0$/m);
    assert.match(c.out(), /pruned 1 tag\(s\), 3 object\(s\)/); // manifest, config, layer; it has no signature
    await withStore(pruneDir, async (catalog, store) => {
      assert.equal(await catalog.getTag('reg.test', 'lab/tool', '1.0'), null);
      assert.equal(await store.has(tool.digest as Digest), false);
      assert.equal(await store.getMeta('manifest', `reg.test/lab/tool@${tool.digest}`), null);
      assert.ok(await catalog.getTag('reg.test', 'prod/app', '1.0'));
    });
  });

  test('prune --max-bytes removes the least recently used image first, with its signature data', async () => {
    await age('reg.test/prod/keyless:1.0', 86_400_000);
    const ls = capture();
    await cacheCommand(ls.io, ['ls', '--config', pruneCfg, '--json']);
    const total = (JSON.parse(ls.out()) as { total: { bytes: number } }).total.bytes;
    const c = capture();
    assert.equal(await cacheCommand(c.io, ['prune', '--max-bytes', String(total - 1), '--config', pruneCfg, '--json']), 0, c.err());
    const summary = JSON.parse(c.out()) as { removedTags: string[]; removedObjects: number };
    assert.deepEqual(summary.removedTags, ['reg.test/prod/keyless:1.0']);
    assert.equal(summary.removedObjects, 7);
    await withStore(pruneDir, async (catalog) => {
      assert.equal(await catalog.getTag('reg.test', 'prod/keyless', '1.0'), null);
      assert.equal(await catalog.getTag('reg.test', 'prod/keyless', keyless.digest.replace(':', '-')), null);
      assert.equal(await catalog.getReferrers('reg.test', 'prod/keyless', keyless.digest as Digest), null);
      assert.ok(await catalog.getManifest('reg.test', 'prod/app', app.digest as Digest));
    });
  });

  test('usage: prune needs a limit; ages and sizes are checked', async () => {
    const c = capture();
    await assert.rejects(cacheCommand(c.io, ['prune', '--config', pruneCfg]), UsageError);
    await assert.rejects(cacheCommand(c.io, ['prune', '--older-than', '7 days', '--config', pruneCfg]), UsageError);
    await assert.rejects(cacheCommand(c.io, ['prune', '--max-bytes', 'lots', '--config', pruneCfg]), UsageError);
    await assert.rejects(cacheCommand(c.io, ['ls', '--older-than', '7d']), UsageError);
    await assert.rejects(cacheCommand(c.io, ['list']), UsageError);
  });
});
