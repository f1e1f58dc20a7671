// A reload swaps sigil's TLS certificate for new connections; connections already open keep
// theirs and go on working (kept alive), and a certificate that does not match its key is
// refused with the old one still served.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { Agent, request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { test } from 'node:test';
import { startSigil, simpleConfig } from '../helpers/sigil.js';
import { tempDir } from '../helpers/temp.js';
import { selfSignedCert } from '../helpers/tls.js';

/** One GET of /healthz through `agent`: the status, the server certificate's fingerprint, and whether the connection was reused. */
function get(url: string, agent: Agent): Promise<{ status: number; fingerprint: string; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${url}/healthz`, { agent, rejectUnauthorized: false }, (res) => {
      const fingerprint = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, fingerprint, reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end();
  });
}

const fingerprintOf = async (certPath: string): Promise<string> => new X509Certificate(await readFile(certPath)).fingerprint256;

test('a reloaded certificate is served to new connections while a kept-alive connection keeps the old one and goes on working', async () => {
  const dir = await tempDir('sigil-tls-rotation-');
  const old = await selfSignedCert(dir, 'old');
  const next = await selfSignedCert(dir, 'next');
  // The paths the config names; the files under them are replaced, as a Secret update does.
  const certPath = join(dir, 'tls.crt');
  const keyPath = join(dir, 'tls.key');
  await writeFile(certPath, await readFile(old.certPath));
  await writeFile(keyPath, await readFile(old.keyPath));
  const yaml = simpleConfig([{ name: 'reg.test', url: 'http://127.0.0.1:9' }]).replace('server:\n', `server:\n  tls:\n    cert: ${certPath}\n    key: ${keyPath}\n`);
  const s = await startSigil(yaml);
  const kept = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const before = await get(s.url, kept);
    assert.equal(before.status, 200);
    assert.equal(before.fingerprint, await fingerprintOf(old.certPath));

    await writeFile(certPath, await readFile(next.certPath));
    await writeFile(keyPath, await readFile(next.keyPath));
    assert.equal((await s.reload()).ok, true);

    const fresh = new Agent({ keepAlive: false });
    const after = await get(s.url, fresh);
    assert.equal(after.status, 200);
    assert.equal(after.fingerprint, await fingerprintOf(next.certPath), 'a new connection still gets the old certificate');

    const again = await get(s.url, kept);
    assert.equal(again.reused, true, 'the kept-alive connection was dropped');
    assert.equal(again.status, 200);
    assert.equal(again.fingerprint, before.fingerprint);

    // A certificate with a key that is not its own: refused; new connections keep the current one.
    const third = await selfSignedCert(dir, 'third');
    await writeFile(certPath, await readFile(third.certPath));
    const refused = await s.reload();
    assert.equal(refused.ok, false);
    assert.match(refused.ok ? '' : refused.problems.join('\n'), /^server\.tls\.key: .* does not match the certificate/m);
    assert.equal((await get(s.url, new Agent({ keepAlive: false }))).fingerprint, await fingerprintOf(next.certPath));
  } finally {
    kept.destroy();
    await s.stop();
  }
});
