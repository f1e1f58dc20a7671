import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { CliIo } from '../../src/cli/io.js';
import { mirrorCommand } from '../../src/cli/mirror.js';
import { spawnSigil } from '../helpers/cli.js';
import { startContainerd, type ContainerdHandle } from '../helpers/containerd.js';
import { freePort, waitForHttp } from '../helpers/net.js';
import { tempDir } from '../helpers/temp.js';
import { pushBundleReferrer, pushLegacySignature } from '../helpers/publish.js';
import { makeLayer, pushIndex, type PushedIndex } from '../helpers/push.js';
import { bundleFor, legacyLayer } from '../helpers/signer.js';
import { ISSUER, SUBJECT, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

// The air gap end to end: mirror (verified, with signatures) and export on the connected side;
// the registry goes away; import into a fresh store and `sigil serve --offline` on the other side,
// where a real containerd pulls the images through it, re-verified from the stored signatures.
const REF_HOST = 'reg.test';
const SERVE_START_MS = 15_000;
let env: VerifyEnv;
let ctd: ContainerdHandle;
let dir: string;
let served: ReturnType<typeof spawnSigil> | undefined;
let sigilUrl: string;
let multi: PushedIndex;
let mirrorCode: number;
let importCode: number;
let logs = '';

function capture(): { io: CliIo; text: () => string } {
  let text = '';
  return { io: { env: {}, cwd: dir, stdout: (t) => void (text += t), stderr: (t) => void (text += t) }, text: () => text };
}

function config(storeDir: string, listen: string, upstreamUrl: string, trustedRoot: string, keyPath: string): string {
  return [
    'server:',
    `  listen: ${listen}`,
    '  logLevel: info',
    'upstreams:',
    `  - name: ${REF_HOST}`,
    `    url: ${upstreamUrl}`,
    `defaultUpstream: ${REF_HOST}`,
    'trust:',
    `  trustedRoot: [public-good, ${trustedRoot}]`,
    'policies:',
    '  - name: prod',
    '    match: ["reg.test/prod/**"]',
    '    mode: enforce',
    '    authorities:',
    `      - { key: ${keyPath}, tlog: ignore }`,
    `      - keyless: { issuer: "${ISSUER}", subjectRegExp: "^https://github\\\\.com/acme/app/.+$" }`,
    'cache:',
    '  store:',
    `    dir: ${storeDir}`,
    '    maxBytes: 1073741824',
    '',
  ].join('\n');
}

before(async () => {
  [env, ctd] = await Promise.all([startVerifyEnv(), startContainerd()]);
  dir = await tempDir('sigil-mirror-offline-');
  multi = await pushIndex(env.target, 'prod/app', '1.0', [
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64' },
  ]);
  await pushLegacySignature(env.target, 'prod/app', multi.digest, [legacyLayer(env.keys.p256, multi.digest)]);
  const img = await env.push('prod/keyless', '1.0', { layers: [makeLayer(Buffer.from('carried across the air gap\n'), 'etc/offline.txt').blob] });
  const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
  await pushBundleReferrer(env.target, 'prod/keyless', { digest: img.digest, size: img.manifest.length, mediaType: img.mediaType }, bundleFor(id, img.digest, { rekor: env.sigstore }));
  await env.push('prod/unsigned', '1.0');

  // connected side: mirror and export
  const online = join(dir, 'online.yaml');
  await writeFile(online, config(join(dir, 'store-online'), '127.0.0.1:0', env.registry.url, env.sigstore.trustedRootPath, env.keys.p256.path));
  const file = join(dir, 'mirror.yaml');
  await writeFile(file, 'images:\n  - image: reg.test/prod/app\n    tags: ["1.0"]\n    platforms: [linux/amd64]\n  - image: reg.test/prod/keyless\n    tags: ["1.0"]\n  - image: reg.test/prod/unsigned\n    tags: ["1.0"]\n');
  const m = capture();
  mirrorCode = await mirrorCommand(m.io, [file, '--config', online, '--export', join(dir, 'layout')]);
  logs += m.text();
  const registryUrl = env.registry.url;
  await env.registry.stop();

  // air-gapped side: import into a fresh store, serve it offline
  const port = await freePort();
  const offline = join(dir, 'offline.yaml');
  await writeFile(offline, config(join(dir, 'store-offline'), `127.0.0.1:${port}`, registryUrl, env.sigstore.trustedRootPath, env.keys.p256.path));
  const i = capture();
  importCode = await mirrorCommand(i.io, ['--import', join(dir, 'layout'), '--config', offline]);
  logs += i.text();
  served = spawnSigil(['serve', '--offline', '--config', offline]);
  sigilUrl = `http://127.0.0.1:${port}`;
  await Promise.race([
    waitForHttp(`${sigilUrl}/readyz`, SERVE_START_MS),
    served.exited.then((code) => Promise.reject(new Error(`sigil serve --offline exited ${code}:\n${served?.out.stderr}${served?.out.stdout}`))),
  ]);
  await ctd.writeHosts(REF_HOST, `server = "${sigilUrl}"\n\n[host."${sigilUrl}"]\n  capabilities = ["pull", "resolve"]\n`);
});
after(async () => {
  served?.process.kill('SIGTERM');
  if (served) await served.exited;
  await ctd?.stop();
  await env?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('mirror denied the unsigned image (exit 1) and the import took everything exported (exit 0)', () => {
  assert.equal(mirrorCode, 1, logs);
  assert.match(logs, /reg\.test\/prod\/unsigned:1\.0 denied/);
  assert.equal(importCode, 0, logs);
});

test('containerd pulls a mirrored multi-arch image from sigil serve --offline, verified again', { timeout: 60_000 }, async () => {
  const r = await ctd.pull(`${REF_HOST}/prod/app:1.0`, { platform: 'linux/amd64' });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}\n${served?.out.stdout}`);
  const files = await ctd.unpackedFiles(`${REF_HOST}/prod/app:1.0`);
  assert.ok(files.some((f) => f.startsWith('sigil-test/')), files.join('\n'));
  const decisions = (served?.out.stdout ?? '').split('\n').filter((l) => l.includes('"audit":"decision"')).map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.ok(decisions.some((d) => d.repository === 'prod/app' && d.digest === multi.digest && d.verification === 'verified'), JSON.stringify(decisions));
});

test('containerd pulls a keylessly signed image (bundle referrer) offline and unpacks its file', { timeout: 60_000 }, async () => {
  const r = await ctd.pull(`${REF_HOST}/prod/keyless:1.0`);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}\n${served?.out.stdout}`);
  assert.equal((await ctd.readUnpackedFile(`${REF_HOST}/prod/keyless:1.0`, 'etc/offline.txt')).toString(), 'carried across the air gap\n');
});

test('what was not mirrored cannot be pulled offline', { timeout: 60_000 }, async () => {
  const r = await ctd.pull(`${REF_HOST}/prod/unsigned:1.0`);
  assert.notEqual(r.code, 0, r.stdout);
  assert.ok(!(await ctd.images()).includes(`${REF_HOST}/prod/unsigned:1.0`));
});
