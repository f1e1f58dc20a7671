// Two-person release signing through sigil: `threshold: 2` over three key authorities, with
// cosign `.sig` layers pushed to a real registry and pulled through the proxy.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runSigil } from '../helpers/cli.js';
import { pushLegacySignature } from '../helpers/publish.js';
import { legacyLayer } from '../helpers/signer.js';
import { pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';
import type { SigilHandle } from '../helpers/sigil.js';

let env: VerifyEnv;
let sigil: SigilHandle;
let configFile: string;

before(async () => {
  env = await startVerifyEnv();
  const k = env.keys;
  const policies = `
  - name: two-person
    match: ["reg.test/release/**"]
    mode: enforce
    threshold: 2
    authorities:
      - { key: ${k.p256.path}, tlog: ignore }
      - { key: ${k.ed25519.path}, tlog: ignore }
      - { key: ${k.rsa.path}, tlog: ignore }
`;
  sigil = await env.sigil(policies);
  configFile = join(env.dir, 'sigil.yaml');
  await writeFile(configFile, `upstreams:\n  - name: reg.test\n    url: ${env.registry.url}\npolicies:${policies}`);
});
after(async () => {
  await env?.stop();
});

const label = (i: number, keyId: string): string => `authority ${i} (key ${keyId})`;

describe('threshold 2 of 3 key authorities', () => {
  test('signed by one key: 403, the message says how many authorities verified and the detail which', async () => {
    const img = await env.push('release/one', 'v1');
    await pushLegacySignature(env.target, 'release/one', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
    const r = await pull(sigil, 'release/one', 'v1');
    assert.equal(r.status, 403);
    const e = r.json().errors[0];
    assert.match(e.message, /threshold not met: 1 of 2 required authorities verified by distinct signers: 1 signature\(s\) found \(policy two-person\)$/);
    assert.deepEqual(e.detail?.threshold, {
      required: 2,
      verified: [label(0, env.keys.p256.keyId)],
      notVerified: [label(1, env.keys.ed25519.keyId), label(2, env.keys.rsa.keyId)],
    });
  });

  test('signed by two keys: served verified, Sigil-Signer names both, the audit record lists the authorities', async () => {
    const img = await env.push('release/two', 'v1');
    await pushLegacySignature(env.target, 'release/two', img.digest, [legacyLayer(env.keys.rsa, img.digest), legacyLayer(env.keys.p256, img.digest)]);
    const r = await pull(sigil, 'release/two', 'v1');
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.headers['sigil-verification'], 'verified');
    assert.equal(r.headers['sigil-signer'], `${env.keys.p256.keyId}, ${env.keys.rsa.keyId}`);
    const audit = sigil.logs.find((l) => l.audit === 'decision' && l.repository === 'release/two');
    assert.deepEqual(audit?.reasons, [
      'threshold 2 met: 2 authorities verified by distinct signers',
      `${label(0, env.keys.p256.keyId)}: verified, signer ${env.keys.p256.keyId} (${img.digest.replace(':', '-')}.sig layer 1)`,
      `${label(2, env.keys.rsa.keyId)}: verified, signer ${env.keys.rsa.keyId} (${img.digest.replace(':', '-')}.sig layer 0)`,
      `${label(1, env.keys.ed25519.keyId)}: not verified: no signature verified`,
    ]);
  });

  test('signed by all three keys: served verified', async () => {
    const img = await env.push('release/three', 'v1');
    await pushLegacySignature(env.target, 'release/three', img.digest, ['p256', 'ed25519', 'rsa'].map((k) => legacyLayer(env.keys[k as 'p256'], img.digest)));
    const r = await pull(sigil, 'release/three', 'v1');
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.headers['sigil-verification'], 'verified');
  });

  test('the same key signing twice counts once: 403', async () => {
    const img = await env.push('release/twice', 'v1');
    await pushLegacySignature(env.target, 'release/twice', img.digest, [legacyLayer(env.keys.p256, img.digest), legacyLayer(env.keys.p256, img.digest, { annotations: { again: 'yes' } })]);
    const r = await pull(sigil, 'release/twice', 'v1');
    assert.equal(r.status, 403);
    assert.match(r.json().errors[0].message, /1 of 2 required authorities verified by distinct signers: 2 signature\(s\) found/);
  });

  test('sigil verify prints each authority as verified, by whom, or not', async () => {
    const img = await env.push('release/cli', 'v1');
    await pushLegacySignature(env.target, 'release/cli', img.digest, [legacyLayer(env.keys.ed25519, img.digest)]);
    const denied = await runSigil(['verify', 'reg.test/release/cli:v1', '--config', configFile]);
    assert.equal(denied.code, 1, denied.stderr);
    const sig = `${img.digest.replace(':', '-')}.sig layer 0`;
    assert.ok(
      denied.stdout.includes(
        [
          '  outcome: invalid',
          '  threshold 2 not met: 1 authority verified by distinct signers',
          `  ${label(1, env.keys.ed25519.keyId)}: verified, signer ${env.keys.ed25519.keyId} (${sig})`,
          `  ${label(0, env.keys.p256.keyId)}: not verified: no signature verified`,
          `  ${label(2, env.keys.rsa.keyId)}: not verified: no signature verified`,
        ].join('\n'),
      ),
      denied.stdout,
    );
    await pushLegacySignature(env.target, 'release/cli', img.digest, [legacyLayer(env.keys.ed25519, img.digest), legacyLayer(env.keys.rsa, img.digest)]);
    const verified = await runSigil(['verify', 'reg.test/release/cli:v1', '--config', configFile]);
    assert.equal(verified.code, 0, verified.stderr + verified.stdout);
    assert.match(verified.stdout, new RegExp(`signer: ${env.keys.ed25519.keyId}, ${env.keys.rsa.keyId}\n  threshold 2 met: 2 authorities verified by distinct signers\n`));
  });
});
