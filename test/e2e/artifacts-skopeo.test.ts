import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pushFluxArtifact, pushHelmChart } from '../helpers/artifacts.js';
import { pushLegacySignature } from '../helpers/publish.js';
import { legacyLayer } from '../helpers/signer.js';
import type { SigilHandle } from '../helpers/sigil.js';
import { skopeoCopyToDir } from '../helpers/skopeo.js';
import { tempDir } from '../helpers/temp.js';
import { startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

// A real Go registry client (skopeo 1.9, containers/image) copies a Flux artifact and a Helm
// chart through sigil: signed, the exact manifest and every blob arrive; unsigned, the copy
// fails on sigil's denial. (Neither flux nor helm runs here; their requests are replayed in
// test/integration/artifacts-verified-like-images.test.ts.)
const COPY_TIMEOUT_MS = 30_000;

let env: VerifyEnv;
let sigil: SigilHandle;
let dir: string;

before(async () => {
  env = await startVerifyEnv();
  dir = await tempDir('sigil-artifacts-skopeo-');
  sigil = await env.sigil(`
  - name: releases
    match: ["reg.test/**"]
    mode: enforce
    authorities:
      - { key: ${env.keys.p256.path}, tlog: ignore }`);
});
after(async () => {
  await env?.stop();
});

test('skopeo copies a signed Flux artifact and a signed Helm chart through sigil, byte for byte', async () => {
  const flux = await pushFluxArtifact(env.target, 'flux/app', '1.0.0');
  const chart = await pushHelmChart(env.target, 'charts', 'demo', '0.1.0');
  for (const [repo, tag, a] of [['flux/app', '1.0.0', flux], [chart.repository, chart.tag, chart]] as const) {
    await pushLegacySignature(env.target, repo, a.digest, [legacyLayer(env.keys.p256, a.digest)]);
    const out = join(dir, repo.replace('/', '-'));
    const res = await skopeoCopyToDir(`docker://${sigil.host}/${repo}:${tag}`, out, { timeoutMs: COPY_TIMEOUT_MS });
    assert.equal(res.code, 0, `${res.stdout}\n${res.stderr}`);
    assert.deepEqual(await readFile(join(out, 'manifest.json')), a.manifest);
    for (const [digest, bytes] of a.blobs) assert.deepEqual(await readFile(join(out, digest.slice('sha256:'.length))), bytes, digest);
  }
});

test('skopeo cannot copy an unsigned Flux artifact through sigil: the copy fails on the denial', async () => {
  await pushFluxArtifact(env.target, 'flux/unsigned', '1.0.0');
  const res = await skopeoCopyToDir(`docker://${sigil.host}/flux/unsigned:1.0.0`, join(dir, 'unsigned'), { timeoutMs: COPY_TIMEOUT_MS });
  assert.notEqual(res.code, 0);
  assert.match(res.stderr, /denied|no signature found/i);
});
