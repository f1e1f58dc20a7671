import assert from 'node:assert/strict';
import { cp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import type { CliIo } from '../../src/cli/io.js';
import { mirrorCommand } from '../../src/cli/mirror.js';
import type { Digest } from '../../src/oci/digest.js';
import { Catalog, ContentStore } from '../../src/store/index.js';
import { sha256 } from '../helpers/digest.js';
import { startPodman, type PodmanHandle } from '../helpers/podman.js';
import { pushLegacySignature } from '../helpers/publish.js';
import type { PushedImage } from '../helpers/push.js';
import { startSigil, type SigilHandle } from '../helpers/sigil.js';
import { legacyLayer } from '../helpers/signer.js';
import { tempDir } from '../helpers/temp.js';
import { pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

// `upstreams[].aliases` against a real registry: an upstream whose name has a port
// (`registry.test:5000`) is also reachable as `registry.test` and `internal`, by path prefix and
// by ns=; its policy matches by its name whatever the client wrote, and the content store files
// everything under that name, so what was mirrored under one name is served offline under another.
const NAME = 'registry.test:5000';

let env: VerifyEnv;
let dir: string;
let configText: string;
let signed: PushedImage;
let other: PushedImage;
let unsigned: PushedImage;

function configFor(store: string): string {
  return configText.replace('__STORE__', store);
}

async function mirror(store: string, fileText: string, extra: string[] = []): Promise<{ code: number; err: string; results: Array<{ image: string; tag: string; status: string }> }> {
  const cfg = join(dir, `sigil-${Math.random().toString(36).slice(2)}.yaml`);
  const file = join(dir, `mirror-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(cfg, configFor(store));
  await writeFile(file, fileText);
  let out = '';
  let err = '';
  const io: CliIo = { env: {}, cwd: dir, stdout: (t) => void (out += t), stderr: (t) => void (err += t) };
  const code = await mirrorCommand(io, [file, '--config', cfg, '--json', ...extra]);
  return { code, err, results: (JSON.parse(out || '{"results":[]}') as { results: Array<{ image: string; tag: string; status: string }> }).results };
}

async function withCatalog<T>(store: string, fn: (catalog: Catalog) => Promise<T>): Promise<T> {
  const content = await ContentStore.open({ dir: store, maxBytes: Number.MAX_SAFE_INTEGER, sweepMetaAtOpen: false });
  try {
    return await fn(new Catalog(content));
  } finally {
    await content.close();
  }
}

async function blob(s: SigilHandle, repo: string, digest: string): Promise<{ status: number; body: Buffer }> {
  const res = await request(`${s.url}/v2/${repo}/blobs/${digest}`);
  return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) };
}

before(async () => {
  env = await startVerifyEnv();
  dir = await tempDir('sigil-aliases-');
  configText = [
    'server:',
    '  listen: 127.0.0.1:0',
    'upstreams:',
    `  - name: "${NAME}"`,
    `    url: ${env.registry.url}`,
    '    aliases: [registry.test, internal]',
    'trust:',
    `  trustedRoot: [public-good, ${env.sigstore.trustedRootPath}]`,
    'policies:',
    '  - name: prod',
    `    match: ["${NAME}/prod/**"]`,
    '    mode: enforce',
    '    authorities:',
    `      - { key: ${env.keys.p256.path}, tlog: ignore }`,
    'cache:',
    '  store:',
    '    dir: __STORE__',
    '    maxBytes: 1073741824',
    '',
  ].join('\n');
  signed = await env.push('prod/app', '1.0');
  await pushLegacySignature(env.target, 'prod/app', signed.digest, [legacyLayer(env.keys.p256, signed.digest)]);
  other = await env.push('prod/other', '1.0');
  await pushLegacySignature(env.target, 'prod/other', other.digest, [legacyLayer(env.keys.p256, other.digest)]);
  unsigned = await env.push('prod/unsigned', '1.0');
});
after(async () => {
  await env?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('online: an alias routes to its upstream, whose name the policy matches', () => {
  let sigil: SigilHandle;
  before(async () => {
    sigil = await startSigil(configFor(join(dir, 'store-online')));
  });
  after(async () => {
    await sigil?.stop();
  });

  test('by path prefix, each alias and the name itself: the same image, verified under the policy of the name', async () => {
    for (const prefix of ['registry.test', 'internal', NAME]) {
      const m = await pull(sigil, `${prefix}/prod/app`, '1.0');
      assert.equal(m.status, 200, `${prefix}: ${m.body.toString()}`);
      assert.deepEqual(m.body, signed.manifest, prefix);
      assert.equal(m.headers['sigil-verification'], 'verified', prefix);
      assert.equal(m.headers['sigil-policy'], 'prod', prefix);
    }
  });

  test('by ns= (what containerd sends to a mirror)', async () => {
    const res = await request(`${sigil.url}/v2/prod/app/manifests/1.0?ns=registry.test`, { headers: { accept: signed.mediaType } });
    const body = Buffer.from(await res.body.arrayBuffer());
    assert.equal(res.statusCode, 200, body.toString());
    assert.equal(res.headers['sigil-policy'], 'prod');
    assert.deepEqual(body, signed.manifest);
  });

  test('an unsigned image asked for by an alias is denied by the enforce policy matched on the name', async () => {
    const m = await pull(sigil, 'internal/prod/unsigned', '1.0');
    assert.equal(m.status, 403, m.body.toString());
    assert.equal(m.json().errors[0].code, 'DENIED');
    assert.match(m.json().errors[0].message, new RegExp(`${NAME.replace('.', '\\.')}/prod/unsigned@${unsigned.digest}`));
  });
});

describe('one content store namespace for the name and its aliases', () => {
  let storeDir: string;
  let offline: SigilHandle;

  before(async () => {
    storeDir = join(dir, 'store-mirrored');
    // one image mirrored under the upstream's name, another under an alias
    const byName = await mirror(storeDir, `images:\n  - image: ${NAME}/prod/app\n    tags: ["1.0"]\n`);
    assert.equal(byName.code, 0, byName.err);
    const byAlias = await mirror(storeDir, 'images:\n  - image: internal/prod/other\n    tags: ["1.0"]\n');
    assert.equal(byAlias.code, 0, byAlias.err);
    assert.deepEqual(byAlias.results.map((r) => [r.image, r.status]), [[`${NAME}/prod/other`, 'verified']]);
    offline = await startSigil(configFor(storeDir), { offline: true });
  });
  after(async () => {
    await offline?.stop();
  });

  test('the store files what was mirrored through an alias under the upstream name', async () => {
    await withCatalog(storeDir, async (catalog) => {
      assert.equal((await catalog.getTag(NAME, 'prod/other', '1.0'))?.value.digest, other.digest);
      assert.equal(await catalog.getTag('internal', 'prod/other', '1.0'), null);
    });
  });

  test('served offline under every name: the manifest verified from the stored signature, and its blobs', async () => {
    for (const [prefix, img, repo] of [
      ['registry.test', signed, 'prod/app'],
      ['internal', signed, 'prod/app'],
      [NAME, other, 'prod/other'],
      ['registry.test', other, 'prod/other'],
    ] as const) {
      const m = await pull(offline, `${prefix}/${repo}`, '1.0');
      assert.equal(m.status, 200, `${prefix}/${repo}: ${m.body.toString()}`);
      assert.equal(m.headers['sigil-verification'], 'verified');
      assert.deepEqual(m.body, img.manifest);
      for (const d of [img.config.digest, ...img.layers.map((l) => l.digest)]) {
        const b = await blob(offline, `${prefix}/${repo}`, d);
        assert.equal(b.status, 200, `${prefix}/${repo} ${d}`);
        assert.equal(sha256(b.body), d);
      }
    }
  });

  test('an OCI layout whose ref names use an alias is imported under the upstream name', async () => {
    const layout = join(dir, 'layout');
    const exported = await mirror(join(dir, 'store-export'), `images:\n  - image: ${NAME}/prod/app\n    tags: ["1.0"]\n`, ['--export', layout]);
    assert.equal(exported.code, 0, exported.err);
    const aliased = join(dir, 'layout-aliased');
    await cp(layout, aliased, { recursive: true });
    const indexPath = join(aliased, 'index.json');
    await writeFile(indexPath, (await readFile(indexPath, 'utf8')).replaceAll(`"${NAME}/`, '"registry.test/'));
    const store = join(dir, 'store-imported');
    const cfg = join(dir, 'sigil-imported.yaml');
    await writeFile(cfg, configFor(store));
    let err = '';
    const io: CliIo = { env: {}, cwd: dir, stdout: () => {}, stderr: (t) => void (err += t) };
    assert.equal(await mirrorCommand(io, ['--import', aliased, '--config', cfg]), 0, err);
    assert.doesNotMatch(err, /not configured/);
    await withCatalog(store, async (catalog) => {
      assert.equal((await catalog.getTag(NAME, 'prod/app', '1.0'))?.value.digest, signed.digest);
      assert.ok(await catalog.getManifest(NAME, 'prod/app', signed.digest as Digest));
      assert.equal(await catalog.getTag('registry.test', 'prod/app', '1.0'), null);
    });
  });
});

describe('podman remapping a registry whose name has a port to sigil, through a port-less alias', () => {
  // `location = "<sigil>/registry.test:5000"` is an invalid reference to podman and CRI-O;
  // `location = "<sigil>/registry.test"` is not, and the alias routes it to the upstream.
  let sigil: SigilHandle;
  let podman: PodmanHandle;
  before(async () => {
    sigil = await startSigil(configFor(join(dir, 'store-podman')));
    podman = await startPodman({
      registriesConf: `[[registry]]\nprefix = "${NAME}"\nlocation = "${sigil.host}/registry.test"\ninsecure = true\n`,
    });
  });
  after(async () => {
    await podman?.stop();
    await sigil?.stop();
  });

  test('podman pulls registry.test:5000/prod/app through sigil, verified', { timeout: 120_000 }, async () => {
    const r = await podman.pull(`${NAME}/prod/app:1.0`);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const decision = sigil.logs.find((l) => l.audit === 'decision' && l.repository === 'prod/app');
    assert.equal(decision?.upstream, NAME);
    assert.equal(decision?.verification, 'verified');
  });

  test('podman is refused the unsigned image, with sigil\'s reason', { timeout: 120_000 }, async () => {
    const r = await podman.pull(`${NAME}/prod/unsigned:1.0`);
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, /no signature found|denied/i);
  });
});
