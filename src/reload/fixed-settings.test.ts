import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfigFromText } from '../config/load.js';
import type { Config } from '../config/types.js';
import { keepFixed } from './fixed-settings.js';

async function config(server: string, more = ''): Promise<Config> {
  const text = `server:\n${server}\nupstreams:\n  - name: reg.test\n    url: http://127.0.0.1:1\npolicies:\n  - name: p\n    match: ["**"]\n    mode: warn\n    authorities:\n      - keyless: { issuerRegExp: "^.*$", subjectRegExp: "^.*$" }\n${more}`;
  const res = await loadConfigFromText(text, { source: 'test.yaml', env: {}, baseDir: '/' });
  if (!res.ok) throw new Error(JSON.stringify(res.problems));
  return res.config;
}

test('a reload that changes only reloadable settings is taken as it is', async () => {
  const running = await config('  listen: 127.0.0.1:5000');
  const next = await config('  listen: 127.0.0.1:5000\n  logLevel: debug');
  const fixed = keepFixed(next, running);
  assert.equal(fixed.config, next);
  assert.deepEqual(fixed.restartNeeded, []);
});

test('a changed listen address is kept as running, and said to need a restart', async () => {
  const running = await config('  listen: 127.0.0.1:5000');
  const next = await config('  listen: 0.0.0.0:6000\n  logLevel: debug');
  const fixed = keepFixed(next, running);
  assert.deepEqual(fixed.config.server.listen, { host: '127.0.0.1', port: 5000 });
  assert.equal(fixed.config.server.logLevel, 'debug', 'the rest of the reload applies');
  assert.equal(fixed.restartNeeded.length, 1);
  assert.match(fixed.restartNeeded[0], /^server\.listen: 0\.0\.0\.0:6000 needs a restart \(still listening on 127\.0\.0\.1:5000\)$/);
  assert.ok(Object.isFrozen(fixed.config.server), 'the kept config is frozen like any other');
});

test('a content store added, removed or moved needs a restart; the running one is kept', async () => {
  const none = await config('  listen: 127.0.0.1:5000');
  const store = await config('  listen: 127.0.0.1:5000', 'cache:\n  store:\n    dir: /var/lib/sigil\n    maxBytes: 1000');
  const moved = await config('  listen: 127.0.0.1:5000', 'cache:\n  store:\n    dir: /srv/sigil\n    maxBytes: 1000');
  assert.equal(keepFixed(store, none).config.cache.store, undefined);
  assert.match(keepFixed(store, none).restartNeeded[0], /^cache\.store: \/var\/lib\/sigil \(maxBytes 1000\) needs a restart \(still using none\)$/);
  assert.deepEqual(keepFixed(none, store).config.cache.store, store.cache.store);
  assert.deepEqual(keepFixed(moved, store).config.cache.store, store.cache.store);
  assert.equal(keepFixed(moved, store).restartNeeded.length, 1);
});

test('TLS turned on or off needs a restart; the running choice is kept', async () => {
  const plain = await config('  listen: 127.0.0.1:5000');
  // A stand-in for a config with server.tls (compiling one needs real PEM files).
  const withTls: Config = { ...plain, server: { ...plain.server, tls: { cert: 'C', key: 'K', certPath: '/c', keyPath: '/k' } } };
  const on = keepFixed(withTls, plain);
  assert.equal(on.config.server.tls, undefined);
  assert.match(on.restartNeeded[0], /^server\.tls: turning TLS on needs a restart \(still serving plain HTTP\)$/);
  const off = keepFixed(plain, withTls);
  assert.deepEqual(off.config.server.tls, withTls.server.tls);
  assert.match(off.restartNeeded[0], /^server\.tls: turning TLS off needs a restart/);
});

test('a TUF repository added, removed or changed needs a restart; the running one is kept', async () => {
  const store = 'cache:\n  store:\n    dir: /var/lib/sigil\n    maxBytes: 1000\n';
  const none = await config('  listen: 127.0.0.1:5000', store);
  const tuf = await config('  listen: 127.0.0.1:5000', `${store}trust:\n  tuf:\n    url: https://tuf.one.test\n`);
  const other = await config('  listen: 127.0.0.1:5000', `${store}trust:\n  tuf:\n    url: https://tuf.two.test\n`);
  assert.deepEqual(keepFixed(tuf, tuf).restartNeeded, []);
  assert.equal(keepFixed(tuf, none).config.trust.tuf, undefined);
  assert.match(keepFixed(tuf, none).restartNeeded[0], /^trust\.tuf: https:\/\/tuf\.one\.test needs a restart \(still using none\)$/);
  assert.deepEqual(keepFixed(none, tuf).config.trust.tuf, tuf.trust.tuf);
  assert.deepEqual(keepFixed(other, tuf).config.trust.tuf, tuf.trust.tuf);
  assert.match(keepFixed(other, tuf).restartNeeded[0], /still using https:\/\/tuf\.one\.test\)$/);
});

test('a shared cache joined, left or changed needs a restart; the running one is kept, and no secret is named', async () => {
  const store = 'cache:\n  store:\n    dir: /var/lib/sigil\n    maxBytes: 1000\n';
  const shared = (bucket: string) => `${store}  shared:\n    s3:\n      bucket: ${bucket}\n      credentials: { accessKeyId: AKID, secretAccessKey: s3cr3t-value }\n    redis:\n      url: redis://:hunter2@redis.test:6379/0\n`;
  const none = await config('  listen: 127.0.0.1:5000', store);
  const one = await config('  listen: 127.0.0.1:5000', shared('bucket-one'));
  const two = await config('  listen: 127.0.0.1:5000', shared('bucket-two'));
  const joined = keepFixed(one, none);
  assert.equal(joined.config.cache.shared, undefined);
  assert.match(joined.restartNeeded[0], /^cache\.shared: bucket bucket-one, redis needs a restart \(still using none\)$/);
  const changed = keepFixed(two, one);
  assert.deepEqual(changed.config.cache.shared, one.cache.shared);
  assert.match(changed.restartNeeded[0], /^cache\.shared: bucket bucket-two, redis needs a restart \(still using bucket bucket-one, redis\)$/);
  assert.deepEqual(keepFixed(none, one).config.cache.shared, one.cache.shared);
  for (const line of [...joined.restartNeeded, ...changed.restartNeeded]) assert.doesNotMatch(line, /s3cr3t|hunter2|AKID/);
});
