import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { request } from 'undici';
import { startFaultServer } from '../helpers/fault-server.js';
import { tempDir } from '../helpers/temp.js';
import { startSigil } from '../helpers/sigil.js';

// Prevents: the contract's "an image that is not stored gets 502/503/504 within 5 s" holding for
// tags only. With a content store, a tag lookup is cut at STALE_DEADLINE_MS (4 s), but a manifest
// by digest (what containerd asks for after resolving a tag) goes to the upstream with the
// client's own timeouts (headers 15 s, metadata deadline 20 s) when an upstream accepts
// connections and never answers.
const cleanup: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

test('a manifest by digest that is not stored fails within 5 s when the upstream hangs', async () => {
  const up = await startFaultServer(() => {
    /* accepts, never answers */
  });
  cleanup.push(() => up.stop());
  const storeDir = await tempDir('sigil-deadline-');
  const sigil = await startSigil(
    `server:\n  listen: 127.0.0.1:0\nupstreams:\n  - name: up.test\n    url: ${up.url}\ndefaultUpstream: up.test\ncache:\n  store:\n    dir: ${storeDir}\n    maxBytes: 1048576\n`,
  );
  cleanup.push(() => sigil.stop());
  // The tag path meets the contract (a control).
  let t0 = Date.now();
  const byTag = await request(`${sigil.url}/v2/app/x/manifests/v1`, { signal: AbortSignal.timeout(10_000) });
  await byTag.body.dump();
  assert.ok(byTag.statusCode >= 502 && byTag.statusCode <= 504 && Date.now() - t0 < 5000, `by tag: ${byTag.statusCode} after ${Date.now() - t0} ms`);

  t0 = Date.now();
  let outcome: string;
  try {
    const res = await request(`${sigil.url}/v2/app/x/manifests/sha256:${'cd'.repeat(32)}`, { signal: AbortSignal.timeout(10_000) });
    await res.body.dump();
    outcome = `${res.statusCode} after ${Date.now() - t0} ms`;
  } catch (err) {
    outcome = `no answer after ${Date.now() - t0} ms (${(err as Error).name})`;
  }
  const ms = Date.now() - t0;
  assert.ok(/^50[234] /.test(outcome) && ms < 5000, `by digest: ${outcome}`);
});
