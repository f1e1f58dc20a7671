import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { defaultDeps, type AppDeps } from '../../src/app.js';
import { createLogger } from '../../src/audit/logger.js';
import type { Config } from '../../src/config/types.js';
import { isSigilError } from '../../src/errors.js';
import { ManifestGate } from '../../src/gate/manifest-gate.js';
import { TrustedVerifier } from '../../src/gate/sigstore-verifier.js';
import type { SignatureVerifier } from '../../src/gate/verifier.js';
import { TrustSource, type TufRoot } from '../../src/trust/trust-source.js';
import { defaultPublicGoodPath, parseTrustedRoot, PUBLIC_GOOD, readTrustedRoots } from '../../src/verify/index.js';
import { createPrivateSigstore, type PrivateSigstore } from '../helpers/private-sigstore.js';
import { pushLegacySignature } from '../helpers/publish.js';
import { legacyLayer } from '../helpers/signer.js';
import { compileConfig } from '../helpers/sigil.js';
import { tempDir } from '../helpers/temp.js';
import { ISSUER, SUBJECT, UPSTREAM, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

// Prevents: a pull that starts after the trust changed (trust.tuf brought a new trusted root)
// being answered by a decision made under the trust it replaced. Concurrent pulls of one manifest
// share one decision in flight; a pull that came after the change joined one that had verified
// under the old trust and was still finishing (keeping its signatures in the store), and was let
// through by a Sigstore the new trust no longer vouches for. Now a decision in flight is shared
// only by pulls under the same trust.
//
// Real registry, real keyless signatures of a private Sigstore, the real gate and verifier; the
// TUF refresher is stood in for by the holder of its latest root, and the verification is held
// after it verified, where a real one writes signatures to the store.

let env: VerifyEnv;
/** What the TUF repository rotates to: env.sigstore's CA is no longer trusted then. */
let other: PrivateSigstore;
let deps: AppDeps;
let config: Config;

before(async () => {
  env = await startVerifyEnv();
  other = await createPrivateSigstore(await tempDir('sigil-other-sigstore'));
  config = await compileConfig(
    [
      'server:',
      '  listen: 127.0.0.1:0',
      'upstreams:',
      `  - name: ${UPSTREAM}`,
      `    url: ${env.registry.url}`,
      `defaultUpstream: ${UPSTREAM}`,
      'trust:',
      '  trustedRoot: [public-good]',
      'policies:',
      '  - name: keyless',
      '    match: ["**"]',
      '    mode: enforce',
      '    authorities:',
      `      - keyless: { issuer: ${ISSUER}, subject: ${SUBJECT} }`,
    ].join('\n'),
  );
  deps = await defaultDeps(config, { logger: createLogger('silent') });
});

after(async () => {
  for (const c of deps?.clients.values() ?? []) await c.close();
  await deps?.hashes.close();
  await env?.stop();
});

const tufRoot = (json: string): TufRoot => ({ url: 'https://tuf.test', rootVersion: 1, verifiedAt: 0, root: parseTrustedRoot(json, 'trusted root from the test') });

test('a pull that starts after a TUF update joins no decision in flight made under the trust it replaced', async () => {
  const img = await env.push('app/in-flight', 'v1');
  const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
  await pushLegacySignature(env.target, 'app/in-flight', img.digest, [legacyLayer(id, img.digest, { rekor: env.sigstore })]);

  const tuf: { latest: TufRoot | null } = { latest: tufRoot(env.sigstore.trustedRootJson) };
  const floor = readTrustedRoots([PUBLIC_GOOD], { publicGoodPath: defaultPublicGoodPath() });
  const trusted = new TrustedVerifier(new TrustSource(floor, [PUBLIC_GOOD], tuf));
  let verified = 0;
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const verifier: SignatureVerifier = {
    get trustFingerprint() {
      return trusted.trustFingerprint;
    },
    async verify(candidates, subject, policy) {
      const outcome = await trusted.verify(candidates, subject, policy);
      verified++;
      await held; // done verifying, not yet done deciding
      return outcome;
    },
  };
  const gate = new ManifestGate({ config, clients: deps.clients, metrics: deps.metrics, logger: deps.logger, verifier });
  const target = { upstream: UPSTREAM, repository: 'app/in-flight', reference: 'v1' };

  const first = gate.decide(target);
  while (verified === 0) await tick();
  tuf.latest = tufRoot(other.trustedRootJson); // the refresher's new root
  const second = gate.decide(target);
  release();

  assert.equal((await first).verification, 'verified', 'the pull that started under the old trust is decided by it');
  await assert.rejects(second, (e: unknown) => isSigilError(e) && e.code === 'POLICY_DENIED', 'verified under the replaced trust only');
  assert.equal(verified, 2, 'the later pull was verified on its own, under the new trust');
});
