// skopeo 1.9 (a Go client, as containerd and CRI-O are) against a sigil with TLS that reloads:
// after a certificate rotation it verifies the new certificate (and no longer the old one);
// after a key rotation in the policy it is denied, and allowed again once the key returns.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pushLegacySignature } from '../helpers/publish.js';
import { legacyLayer } from '../helpers/signer.js';
import { startSigil, type SigilHandle } from '../helpers/sigil.js';
import { SKOPEO_BIN, skopeoInspect } from '../helpers/skopeo.js';
import { tempDir } from '../helpers/temp.js';
import { selfSignedCert } from '../helpers/tls.js';
import { startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

const skip = existsSync(SKOPEO_BIN) ? false : `${SKOPEO_BIN} not installed`;
const PULL_TIMEOUT_MS = 30_000; // skopeo is killed after this: a hanging sigil fails the test in time

let env: VerifyEnv;
let sigil: SigilHandle | undefined;
before(async () => {
  if (!skip) env = await startVerifyEnv();
});
after(async () => {
  await sigil?.stop();
  await env?.stop();
});

/** A skopeo cert dir trusting only the certificate at `certPath` (*.crt there are CAs). */
async function trusting(dir: string, name: string, certPath: string): Promise<string> {
  const d = join(dir, name);
  await mkdir(d);
  await copyFile(certPath, join(d, 'ca.crt'));
  return d;
}

test('skopeo sees a rotated certificate and a rotated key after reloads, without a restart', { skip, timeout: 120_000 }, async () => {
  const dir = await tempDir('sigil-reload-e2e-');
  const [a, b] = [await selfSignedCert(dir, 'a'), await selfSignedCert(dir, 'b')];
  const [trustA, trustB] = [await trusting(dir, 'trust-a', a.certPath), await trusting(dir, 'trust-b', b.certPath)];
  const certPath = join(dir, 'tls.crt');
  const keyPath = join(dir, 'tls.key');
  await writeFile(certPath, await readFile(a.certPath));
  await writeFile(keyPath, await readFile(a.keyPath));
  const policyKey = join(dir, 'policy.pub');
  await writeFile(policyKey, env.keys.p256.publicPem);

  const img = await env.push('e2e/reload', 'v1');
  await pushLegacySignature(env.target, 'e2e/reload', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
  const policies = `
  - name: prod
    match: ["**"]
    mode: enforce
    authorities:
      - { key: ${policyKey}, tlog: ignore }`;
  sigil = await startSigil(env.config(policies).replace('server:\n', `server:\n  tls:\n    cert: ${certPath}\n    key: ${keyPath}\n`));
  const inspect = (certDir: string) => skopeoInspect(`docker://${sigil?.host}/e2e/reload:v1`, { raw: true, tlsVerify: true, certDir, timeoutMs: PULL_TIMEOUT_MS });

  const first = await inspect(trustA);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(JSON.parse(first.stdout).config.digest, img.config.digest);

  await writeFile(certPath, await readFile(b.certPath));
  await writeFile(keyPath, await readFile(b.keyPath));
  assert.equal((await sigil.reload()).ok, true);
  const oldTrust = await inspect(trustA);
  assert.notEqual(oldTrust.code, 0, 'skopeo still got the old certificate');
  assert.match(oldTrust.stderr, /x509|certificate/);
  const newTrust = await inspect(trustB);
  assert.equal(newTrust.code, 0, newTrust.stderr);

  await writeFile(policyKey, env.stranger.publicPem);
  assert.equal((await sigil.reload()).ok, true);
  const denied = await inspect(trustB);
  assert.notEqual(denied.code, 0, 'skopeo got an image the new key does not verify');
  assert.match(denied.stderr, /denied/i);

  await writeFile(policyKey, env.keys.p256.publicPem);
  assert.equal((await sigil.reload()).ok, true);
  const again = await inspect(trustB);
  assert.equal(again.code, 0, again.stderr);
});
