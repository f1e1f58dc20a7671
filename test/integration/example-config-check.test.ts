import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import bcrypt from 'bcryptjs';
import { implementedExample, writeExampleTufRoot } from '../helpers/example-config.js';
import { runSigil } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp.js';

// `sigil config check` on the project's own example (docs/sigil.example.yaml, without the keys it
// marks NOT IMPLEMENTED YET), with the files it names present and its variables set: valid, and
// not one warning — an operator who copies it starts from a config sigil has nothing to say about.

let dir: string;
before(async () => {
  dir = await tempDir('sigil-example-');
  await mkdir(join(dir, 'etc/sigil'), { recursive: true });
  await mkdir(join(dir, 'config/keys'), { recursive: true });
  await mkdir(join(dir, 'config/private-sigstore'), { recursive: true });
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
    '-subj', '/CN=localhost', '-keyout', join(dir, 'etc/sigil/tls.key'), '-out', join(dir, 'etc/sigil/tls.crt')], { stdio: 'ignore' });
  execFileSync('cp', [join(dir, 'etc/sigil/tls.crt'), join(dir, 'etc/sigil/internal-ca.pem')]);
  await writeFile(join(dir, 'etc/sigil/htpasswd'), `alice:${bcrypt.hashSync('s3cret', 4).replace(/^\$2b\$/, '$2y$')}\n`); // as `htpasswd -B` writes it
  await writeFile(join(dir, 'config/keys/acme.pub'), generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString());
  await writeFile(join(dir, 'config/private-sigstore/trusted_root.json'), '{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}');
  await writeExampleTufRoot(dir);
  const text = (await implementedExample()).replaceAll('/etc/sigil/', `${dir}/etc/sigil/`).replaceAll('/var/lib/sigil/', `${dir}/var/lib/sigil/`);
  await writeFile(join(dir, 'sigil.yaml'), text);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('sigil config check: the example is valid and draws no warning', async () => {
  const r = await runSigil(['config', 'check', '--config', join(dir, 'sigil.yaml')], { cwd: dir, env: { GHCR_USER: 'bot', GHCR_TOKEN: 'token', S3_ACCESS_KEY_ID: 'AKIAEXAMPLE', S3_SECRET_ACCESS_KEY: 's3-secret', SIGIL_PEER_TOKEN: '0123456789abcdef0123456789abcdef' } });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '', 'no warning');
  assert.match(r.stdout, /sigil\.yaml: valid — 3 upstream\(s\), 2 policies/);
});
