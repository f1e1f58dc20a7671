import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SigilError } from '../errors.js';
import { STALE_BREAKER_MS, UpstreamBreaker, staleCovers } from './stale-breaker.js';

test('an answering upstream is asked; after a failure the stored answer is served for the interval', () => {
  const clock = { now: 0 };
  const b = new UpstreamBreaker({ now: () => clock.now });
  assert.equal(b.turn(), 'ask');
  assert.equal(b.failed(), true, 'it was answering until now');
  assert.equal(b.failed(), false, 'a failure while failing is not news');
  clock.now += STALE_BREAKER_MS - 1;
  assert.equal(b.turn(), 'stored');
});

test('once the interval is over one request at a time probes; its answer closes the breaker', () => {
  const clock = { now: 0 };
  const b = new UpstreamBreaker({ now: () => clock.now, intervalMs: 100 });
  b.failed();
  clock.now = 100;
  assert.equal(b.turn(), 'probe');
  assert.equal(b.turn(), 'stored', 'only one probe at a time');
  b.probed();
  assert.equal(b.answered(), true);
  assert.equal(b.turn(), 'ask');
});

test('a failed probe starts the interval again', () => {
  const clock = { now: 0 };
  const b = new UpstreamBreaker({ now: () => clock.now, intervalMs: 100 });
  b.failed();
  clock.now = 100;
  assert.equal(b.turn(), 'probe');
  b.failed();
  b.probed();
  clock.now = 199;
  assert.equal(b.turn(), 'stored');
});

test('stale-if-error covers outages, timeouts, 429 and bad answers, not "not found" or "denied"', () => {
  for (const code of ['UPSTREAM_UNREACHABLE', 'UPSTREAM_TIMEOUT', 'UPSTREAM_TOOMANYREQUESTS', 'UPSTREAM_BAD_RESPONSE'] as const) {
    assert.equal(staleCovers(new SigilError({ code, message: code })), true, code);
  }
  for (const code of ['MANIFEST_UNKNOWN', 'UPSTREAM_DENIED'] as const) assert.equal(staleCovers(new SigilError({ code, message: code })), false, code);
  assert.equal(staleCovers(new Error('not ours')), false);
});
