import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { request } from 'undici';
import { STALE_DEADLINE_MS } from '../../src/registry/stale-deadline.js';
import { startFaultServer } from '../helpers/fault-server.js';
import { tempDir } from '../helpers/temp.js';
import { startSigil } from '../helpers/sigil.js';

// Prevents: the contract's "an image that is not stored gets 502/503/504 within 5 s" holding for
// tags only. With a content store, a tag lookup is cut at STALE_DEADLINE_MS (4 s), but a manifest
// by digest (what containerd asks for after resolving a tag) went to the upstream with the
// client's own timeouts (headers 15 s, metadata deadline 20 s) when an upstream accepts
// connections and never answers. The deadline is injected (short) here: what is checked is that
// it cuts both lookups, not how long it is.
const DEADLINE_MS = 200;
const cleanup: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

test('the stale deadline is inside the contract\'s 5 s', () => {
  assert.ok(STALE_DEADLINE_MS < 5_000);
});

test('a manifest by digest that is not stored fails at the stale deadline when the upstream hangs, as a tag does', async () => {
  const up = await startFaultServer(() => {
    /* accepts, never answers */
  });
  const storeDir = await tempDir('sigil-deadline-');
  const sigil = await startSigil(
    `server:\n  listen: 127.0.0.1:0\nupstreams:\n  - name: up.test\n    url: ${up.url}\ndefaultUpstream: up.test\ncache:\n  store:\n    dir: ${storeDir}\n    maxBytes: 1048576\n`,
    { staleDeadlineMs: DEADLINE_MS },
  );
  cleanup.push(() => sigil.stop());
  cleanup.push(() => up.stop()); // first: its held requests would hold sigil's close for CLOSE_GRACE_MS
  for (const reference of ['v1', `sha256:${'cd'.repeat(32)}`]) {
    // (the signal only keeps a regression from hanging the suite: the client's own timeouts are 15 s and more)
    const res = await request(`${sigil.url}/v2/app/x/manifests/${reference}`, { signal: AbortSignal.timeout(10_000) });
    const body = await res.body.text();
    assert.ok(res.statusCode >= 502 && res.statusCode <= 504, `${reference}: ${res.statusCode} ${body}`);
    assert.match(body, new RegExp(`no answer within ${DEADLINE_MS} ms`), reference);
  }
});
