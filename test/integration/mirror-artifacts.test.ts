import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { CliIo } from '../../src/cli/io.js';
import { mirrorCommand } from '../../src/cli/mirror.js';
import type { Digest } from '../../src/oci/digest.js';
import { Catalog, ContentStore } from '../../src/store/index.js';
import { describePull, exchangeHeader as h, fluxPull, helmPull } from '../helpers/artifact-clients.js';
import { pushFluxArtifact, pushHelmChart, pushOrasArtifact, type PushedArtifact } from '../helpers/artifacts.js';
import { pushLegacySignature } from '../helpers/publish.js';
import { startSigil } from '../helpers/sigil.js';
import { legacyLayer } from '../helpers/signer.js';
import { tempDir } from '../helpers/temp.js';
import { startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

// `sigil mirror` with semver ranges over Flux artifacts, Helm charts and an OCI 1.1 artifact:
// the range is read from the tags as the tools write them (Helm's `_` for `+`), each selected
// artifact is verified like an image, copied with its signature (a `platforms:` filter has no
// platforms to pick in a manifest that is not an index), exported, imported elsewhere and
// served offline to the clients that pull such artifacts.

let env: VerifyEnv;
let dir: string;
let configText: string;
const flux = new Map<string, PushedArtifact>();
const charts = new Map<string, PushedArtifact & { tag: string; repository: string }>();
let rules: PushedArtifact;
let run: { code: number; err: string; results: Array<{ image: string; tag: string; status: string; digest?: string; reason?: string; objects: number }> };

function capture(): { io: CliIo; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return { io: { env: {}, cwd: dir, stdout: (t) => void (out += t), stderr: (t) => void (err += t) }, out: () => out, err: () => err };
}

async function writeConfig(name: string): Promise<string> {
  const path = join(dir, `${name}.yaml`);
  await writeFile(path, configText.replace('__STORE__', join(dir, name)));
  return path;
}

before(async () => {
  env = await startVerifyEnv();
  dir = await tempDir('sigil-mirror-artifacts-');
  configText = [
    'upstreams:',
    '  - name: reg.test',
    `    url: ${env.registry.url}`,
    'defaultUpstream: reg.test',
    'trust:',
    `  trustedRoot: [public-good, ${env.sigstore.trustedRootPath}]`,
    'policies:',
    '  - name: releases',
    '    match: ["reg.test/**"]',
    '    mode: enforce',
    '    authorities:',
    `      - { key: ${env.keys.p256.path}, tlog: ignore }`,
    'cache:',
    '  store:',
    '    dir: __STORE__',
    '    maxBytes: 1073741824',
    '',
  ].join('\n');
  const sign = (repo: string, a: PushedArtifact) => pushLegacySignature(env.target, repo, a.digest, [legacyLayer(env.keys.p256, a.digest)]);
  for (const v of ['0.9.0', '1.0.0', 'v1.1.0', '1.2.0', '2.0.0', 'latest']) {
    const a = await pushFluxArtifact(env.target, 'flux/app', v);
    if (v !== '1.2.0') await sign('flux/app', a);
    flux.set(v, a);
  }
  for (const v of ['0.1.0', '0.2.0+build.7', '1.0.0']) {
    const c = await pushHelmChart(env.target, 'charts', 'demo', v);
    await sign(c.repository, c);
    charts.set(v, c);
  }
  rules = await pushOrasArtifact(env.target, 'oras/rules', '1.0.0', {
    artifactType: 'application/vnd.acme.rules.v1',
    files: [{ name: 'rules.yaml', mediaType: 'application/vnd.acme.rules.layer.v1+yaml', content: Buffer.from('rules: []\n') }],
  });
  await sign('oras/rules', rules);

  const file = join(dir, 'mirror.yaml');
  await writeFile(
    file,
    [
      'images:',
      '  - image: reg.test/flux/app',
      '    semver: ">=1.0.0 <2.0.0"',
      '    platforms: [linux/amd64]',
      '  - image: reg.test/charts/demo',
      '    semver: "<1.0.0"',
      '  - image: reg.test/oras/rules',
      '    latest: 1',
      '',
    ].join('\n'),
  );
  const c = capture();
  const code = await mirrorCommand(c.io, [file, '--config', await writeConfig('store'), '--export', join(dir, 'layout'), '--json']);
  run = { code, err: c.err(), results: (JSON.parse(c.out()) as { results: typeof run.results }).results };
});
after(async () => {
  await env?.stop();
});

describe('sigil mirror over artifacts', () => {
  test('a semver range of Flux artifacts: the signed ones in range verified, the unsigned one denied (exit 1)', () => {
    assert.equal(run.code, 1, run.err);
    const fluxResults = run.results.filter((r) => r.image === 'reg.test/flux/app');
    assert.deepEqual(fluxResults.map((r) => [r.tag, r.status]), [['1.2.0', 'denied'], ['v1.1.0', 'verified'], ['1.0.0', 'verified']]);
    for (const r of fluxResults.filter((x) => x.status === 'verified')) {
      assert.equal(r.digest, flux.get(r.tag)?.digest);
      assert.equal(r.objects, 6, r.tag); // manifest, config, layer; .sig manifest, config, payload
    }
    assert.match(fluxResults[0].reason ?? '', /no signature found/);
  });

  test('Helm chart tags are read with `_` as `+`: 0.2.0_build.7 is version 0.2.0+build.7, in range', () => {
    const r = run.results.filter((x) => x.image === 'reg.test/charts/demo');
    assert.deepEqual(r.map((x) => [x.tag, x.status]), [['0.2.0_build.7', 'verified'], ['0.1.0', 'verified']]);
  });

  test('an OCI 1.1 artifact (empty config, artifactType) is mirrored like any other', () => {
    const r = run.results.find((x) => x.image === 'reg.test/oras/rules');
    assert.equal(r?.status, 'verified', JSON.stringify(r));
    assert.equal(r?.digest, rules.digest);
  });

  test('what was verified is in the store with every blob; nothing of the denied artifact is', async () => {
    const store = await ContentStore.open({ dir: join(dir, 'store'), maxBytes: Number.MAX_SAFE_INTEGER });
    try {
      const catalog = new Catalog(store);
      for (const v of ['1.0.0', 'v1.1.0']) {
        const a = flux.get(v) as PushedArtifact;
        assert.equal((await catalog.getTag('reg.test', 'flux/app', v))?.value.digest, a.digest);
        for (const d of [a.config, ...a.layers]) assert.ok(await catalog.hasBlob('reg.test', 'flux/app', d.digest as Digest), `${v} ${d.mediaType}`);
      }
      const denied = flux.get('1.2.0') as PushedArtifact;
      for (const d of [denied.digest, denied.config.digest, denied.layers[0].digest]) assert.equal(await store.has(d as Digest), false);
      for (const v of ['0.9.0', '2.0.0', 'latest']) assert.equal(await catalog.getTag('reg.test', 'flux/app', v), null, v);
    } finally {
      await store.close();
    }
  });

  test('imported from the export and served offline: source-controller and helm pull them verified', async () => {
    const imported = await writeConfig('imported');
    const c = capture();
    assert.equal(await mirrorCommand(c.io, ['--import', join(dir, 'layout'), '--config', imported, '--json']), 0, c.err());
    const s = await startSigil(await readFile(imported, 'utf8'), { offline: true });
    try {
      const f = await fluxPull(s.url, 'flux/app', { semver: '>=1.0.0 <2.0.0' });
      assert.equal(f.failed, undefined, describePull(f));
      assert.equal(f.tag, 'v1.1.0');
      assert.equal(h(f.exchanges[1], 'sigil-verification'), 'verified');
      assert.deepEqual(f.manifest, flux.get('v1.1.0')?.manifest);
      const chart = charts.get('0.2.0+build.7') as PushedArtifact & { tag: string; repository: string };
      const p = await helmPull(s.url, chart.repository, chart.tag);
      assert.equal(p.failed, undefined, describePull(p));
      assert.equal(h(p.exchanges[0], 'sigil-verification'), 'verified');
      for (const d of [chart.config.digest, chart.layers[0].digest]) assert.deepEqual(p.blobs.get(d), chart.blobs.get(d));
    } finally {
      await s.stop();
    }
  });
});
