// A verdict answers one question: this digest under these requirements. Through a real registry
// and a running sigil whose config is reloaded: once the attestation requirements change — a
// condition, a predicate type, a requirement added or dropped — the verdict reached before is not
// served again, neither an allow nor a denial.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PREDICATE, attestationLayer, slsaProvenance, statement } from '../helpers/attester.js';
import { pushLegacyAttestation, pushLegacySignature } from '../helpers/publish.js';
import type { SigilHandle } from '../helpers/sigil.js';
import { legacyLayer } from '../helpers/signer.js';
import { SUBJECT, UPSTREAM, pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

const OUR_REPO = 'https://github.com/acme/app';
let env: VerifyEnv;
let sigil: SigilHandle;

function policyWith(attestations: string): string {
  return `
  - name: provenance
    match: ["${UPSTREAM}/prov/**"]
    mode: enforce
    authorities:
      - { key: ${env.keys.p256.path}, tlog: ignore }
${attestations}`;
}

const fromRepo = (repo: string): string => `    attestations:
      - name: built-by-our-ci
        predicateType: ${PREDICATE.SLSA_V1}
        condition: predicate.buildDefinition.externalParameters.workflow.repository == "${repo}"
`;
const OURS = fromRepo(OUR_REPO);

before(async () => {
  env = await startVerifyEnv();
  sigil = await env.sigil(policyWith(OURS));
});
after(async () => {
  await env?.stop();
});

async function status(repo: string): Promise<number> {
  return (await pull(sigil, repo, 'v1')).status;
}

async function reload(attestations: string): Promise<void> {
  const r = await sigil.reload(env.config(policyWith(attestations)));
  assert.equal(r.ok, true, JSON.stringify(r));
}

test('each change of the attestation requirements decides anew; going back decides as before', async () => {
  const img = await env.push('prov/app', 'v1');
  await pushLegacySignature(env.target, 'prov/app', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
  const prov = statement(img.digest, PREDICATE.SLSA_V1, slsaProvenance({ builderId: SUBJECT, repository: OUR_REPO }));
  await pushLegacyAttestation(env.target, 'prov/app', img.digest, [attestationLayer(env.keys.p256, prov)]);
  assert.equal(await status('prov/app'), 200);
  assert.equal(await status('prov/app'), 200);

  await reload(fromRepo('https://github.com/acme/other'));
  assert.equal(await status('prov/app'), 403, 'another condition: the verdict under the first is not reused');

  await reload(`    attestations:
      - name: sbom
        predicateType: ${PREDICATE.SPDX}
`);
  assert.equal(await status('prov/app'), 403, 'another predicate type');

  await reload(`${OURS}      - name: sbom
        predicateType: ${PREDICATE.SPDX}
`);
  assert.equal(await status('prov/app'), 403, 'a requirement added');

  await reload('');
  assert.equal(await status('prov/app'), 200, 'no attestations required: the denials are not reused either');

  await reload(OURS);
  assert.equal(await status('prov/app'), 200);
});
