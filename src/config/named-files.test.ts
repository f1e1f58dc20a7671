import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../../test/helpers/temp.js';
import { loadConfig, loadConfigFromText } from './load.js';
import { namedFiles } from './named-files.js';

test('every file a config was read from is named once, absolute; inline keys and public-good are not files', async () => {
  const dir = await tempDir('sigil-named-');
  const pem = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
  await writeFile(join(dir, 'acme.pub'), pem);
  await writeFile(join(dir, 'root.json'), '{}');
  const inline = pem.trim().split('\n').map((l) => `          ${l}`).join('\n');
  await writeFile(join(dir, 'sigil.yaml'), `
upstreams:
  - name: reg.test
    url: http://127.0.0.1:1
trust:
  trustedRoot: [public-good, root.json]
policies:
  - name: a
    match: ["a/**"]
    mode: enforce
    authorities:
      - key: acme.pub
      - key: |
${inline}
  - name: b
    match: ["**"]
    mode: enforce
    authorities:
      - key: acme.pub
`);
  const res = await loadConfig({ path: 'sigil.yaml', env: {}, cwd: dir });
  assert.ok(res.ok, JSON.stringify(!res.ok && res.problems));
  assert.deepEqual(namedFiles(res.config), [join(dir, 'sigil.yaml'), join(dir, 'acme.pub'), join(dir, 'root.json')]);
});

test('the built-in default names no file', async () => {
  const res = await loadConfig({ env: {}, cwd: await tempDir('sigil-named-') });
  assert.ok(res.ok);
  assert.deepEqual(namedFiles(res.config), []);
});

test('TLS certificate and key, htpasswd and upstream CA bundles are named', async () => {
  const res = await loadConfigFromText('upstreams:\n  - name: reg.test\n    url: http://127.0.0.1:1\n', { source: '/etc/sigil/sigil.yaml', env: {}, baseDir: '/' });
  assert.ok(res.ok);
  // Compiling these needs real PEM and htpasswd files; the paths are what matters here.
  const config = {
    ...res.config,
    server: { ...res.config.server, tls: { cert: '', key: '', certPath: '/etc/sigil/tls.crt', keyPath: '/etc/sigil/tls.key' }, auth: { htpasswdPath: '/etc/sigil/htpasswd', users: new Map() } },
    upstreams: [{ ...res.config.upstreams[0], tls: { caPath: '/etc/sigil/ca.pem', insecureSkipVerify: false } }],
  };
  assert.deepEqual(namedFiles(config), ['/etc/sigil/sigil.yaml', '/etc/sigil/tls.crt', '/etc/sigil/tls.key', '/etc/sigil/htpasswd', '/etc/sigil/ca.pem']);
});
