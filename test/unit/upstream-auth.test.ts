import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenCache } from '../../src/upstream/auth.js';
import { bearerChallenge, parseTokenAnswer, parseWwwAuthenticate, pullScope, tokenTtlMs } from '../../src/upstream/challenge.js';
import type { TokenAnswer } from '../../src/upstream/challenge.js';
import { parseDistributionError, statusError } from '../../src/upstream/error-map.js';
import { TOKEN_DEFAULT_EXPIRES_IN_S, TOKEN_EXPIRY_MARGIN_MS } from '../../src/upstream/limits.js';
import { fakeClock } from '../helpers/clock.js';

const params = (o: Record<string, string>): Record<string, string> => Object.assign(Object.create(null) as Record<string, string>, o);

describe('parseWwwAuthenticate', () => {
  test('Docker Hub style Bearer challenge', () => {
    const got = parseWwwAuthenticate(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"',
    );
    assert.deepEqual(got, [
      {
        scheme: 'bearer',
        params: params({ realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/nginx:pull' }),
      },
    ]);
  });

  test('a quoted value may hold commas and "=" (several actions)', () => {
    const [c] = parseWwwAuthenticate('Bearer realm="https://r/t?a=b",scope="repository:a/b:pull,push",service="s"');
    assert.equal(c.params.scope, 'repository:a/b:pull,push');
    assert.equal(c.params.realm, 'https://r/t?a=b');
    assert.equal(c.params.service, 's');
  });

  test('backslash escapes in quoted strings', () => {
    const [c] = parseWwwAuthenticate('Bearer realm="https://r/t",error="say \\"no\\", twice",x="back\\\\slash"');
    assert.equal(c.params.error, 'say "no", twice');
    assert.equal(c.params.x, 'back\\slash');
    assert.equal(c.params.realm, 'https://r/t');
  });

  test('several challenges in one header, in order', () => {
    const got = parseWwwAuthenticate('Basic realm="registry", Bearer realm="https://t/token",service="svc"');
    assert.deepEqual(
      got.map((c) => c.scheme),
      ['basic', 'bearer'],
    );
    assert.equal(got[0].params.realm, 'registry');
    assert.equal(got[1].params.realm, 'https://t/token');
    assert.equal(got[1].params.service, 'svc');
  });

  test('several header values', () => {
    const got = parseWwwAuthenticate(['Basic realm="a"', 'Bearer realm="https://b/"']);
    assert.deepEqual(
      got.map((c) => [c.scheme, c.params.realm]),
      [
        ['basic', 'a'],
        ['bearer', 'https://b/'],
      ],
    );
  });

  test('scheme and parameter names are case-insensitive; values are kept as sent', () => {
    const [c] = parseWwwAuthenticate('BEARER Realm="https://R/Token",SERVICE="Svc"');
    assert.equal(c.scheme, 'bearer');
    assert.equal(c.params.realm, 'https://R/Token');
    assert.equal(c.params.service, 'Svc');
  });

  test('spaces around "=" and commas, and unquoted values (even a URL)', () => {
    const [c] = parseWwwAuthenticate('Bearer   realm = https://r.example/token ,  service = registry , scope="x"');
    assert.equal(c.params.realm, 'https://r.example/token');
    assert.equal(c.params.service, 'registry');
    assert.equal(c.params.scope, 'x');
  });

  test('token68 challenges are kept apart from parameters', () => {
    const got = parseWwwAuthenticate('Negotiate abc/+d==, Bearer realm="https://t/"');
    assert.equal(got[0].scheme, 'negotiate');
    assert.equal(got[0].token68, 'abc/+d==');
    assert.equal(got[1].scheme, 'bearer');
    assert.equal(got[1].params.realm, 'https://t/');
    assert.equal(got[1].token68, undefined);
  });

  test('a repeated parameter keeps its first value', () => {
    const [c] = parseWwwAuthenticate('Bearer realm="https://first/",realm="https://second/"');
    assert.equal(c.params.realm, 'https://first/');
  });

  test('"__proto__" as a parameter name does not pollute anything', () => {
    const [c] = parseWwwAuthenticate('Bearer __proto__="x",realm="https://t/"');
    assert.equal(c.params.__proto__, 'x');
    assert.equal(({} as Record<string, unknown>).x, undefined);
    assert.equal(c.params.realm, 'https://t/');
  });

  test('empty, missing and junk input never throws', () => {
    assert.deepEqual(parseWwwAuthenticate(undefined), []);
    assert.deepEqual(parseWwwAuthenticate(''), []);
    assert.deepEqual(parseWwwAuthenticate('  ,, '), []);
    // a parameter before any scheme is dropped
    assert.deepEqual(parseWwwAuthenticate('realm="x"'), []);
    const junk = parseWwwAuthenticate('@@@ Bearer realm="https://t/" ;;;');
    assert.equal(junk.find((c) => c.scheme === 'bearer')?.params.realm, 'https://t/');
  });

  test('an unterminated quoted string takes the rest of the header', () => {
    const [c] = parseWwwAuthenticate('Bearer realm="https://t/token,service="s');
    assert.equal(c.params.realm, 'https://t/token,service=');
  });

  test('a bare scheme has no parameters', () => {
    const got = parseWwwAuthenticate('Basic');
    assert.deepEqual(got, [{ scheme: 'basic', params: params({}) }]);
  });
});

describe('bearerChallenge', () => {
  test('takes the first Bearer challenge with an http(s) realm', () => {
    const b = bearerChallenge(parseWwwAuthenticate('Basic realm="x", Bearer realm="https://auth/token",service="svc",scope="repository:a:pull"'));
    assert.equal(b?.realm.href, 'https://auth/token');
    assert.equal(b?.service, 'svc');
    assert.equal(b?.scope, 'repository:a:pull');
  });

  test('refuses realms that are not http(s) URLs or that carry user info', () => {
    for (const realm of ['file:///etc/passwd', 'javascript:alert(1)', 'not a url', 'https://user:pw@auth/token', 'ftp://x/']) {
      assert.equal(bearerChallenge(parseWwwAuthenticate(`Bearer realm="${realm}"`)), undefined, realm);
    }
    assert.equal(bearerChallenge(parseWwwAuthenticate('Bearer service="x"')), undefined);
  });

  test('empty service and scope are left out', () => {
    const b = bearerChallenge(parseWwwAuthenticate('Bearer realm="http://127.0.0.1:1/t",service="",scope=""'));
    assert.deepEqual(Object.keys(b ?? {}).sort(), ['realm']);
  });
});

describe('token answers', () => {
  test('token, else access_token; expires_in defaults to 60 s', () => {
    assert.deepEqual(parseTokenAnswer(Buffer.from('{"token":"abc","expires_in":300}')), { token: 'abc', expiresInS: 300 });
    assert.deepEqual(parseTokenAnswer(Buffer.from('{"access_token":"xyz"}')), { token: 'xyz', expiresInS: TOKEN_DEFAULT_EXPIRES_IN_S });
    assert.deepEqual(parseTokenAnswer(Buffer.from('{"token":"","access_token":"xyz","expires_in":-5}')), {
      token: 'xyz',
      expiresInS: TOKEN_DEFAULT_EXPIRES_IN_S,
    });
  });

  test('no token, a token that cannot go in a header, or not JSON: undefined', () => {
    assert.equal(parseTokenAnswer(Buffer.from('{}')), undefined);
    assert.equal(parseTokenAnswer(Buffer.from('{"token":"a\\r\\nX-Evil: 1"}')), undefined);
    assert.equal(parseTokenAnswer(Buffer.from('{"token":"has space"}')), undefined);
    assert.equal(parseTokenAnswer(Buffer.from('<html>')), undefined);
    assert.equal(parseTokenAnswer(Buffer.from('null')), undefined);
  });

  test('a token is used until its expiry minus a margin, and at least half its life', () => {
    assert.equal(tokenTtlMs(300), 300_000 - TOKEN_EXPIRY_MARGIN_MS);
    assert.equal(tokenTtlMs(2), 1000);
  });

  test('pull scope', () => {
    assert.equal(pullScope('library/nginx'), 'repository:library/nginx:pull');
  });
});

describe('TokenCache', () => {
  const key = TokenCache.key(new URL('https://auth/token'), 'svc', 'repository:a:pull');

  test('concurrent callers of one key share one fetch', async () => {
    const cache = new TokenCache();
    let fetches = 0;
    let release: (a: TokenAnswer) => void = () => undefined;
    const fetch = (): Promise<TokenAnswer> => {
      fetches++;
      return new Promise((resolve) => {
        release = resolve;
      });
    };
    const all = Promise.all(Array.from({ length: 10 }, () => cache.get(key, fetch)));
    await new Promise((r) => setImmediate(r));
    release({ token: 'T1', expiresInS: 300 });
    const got = await all;
    assert.equal(fetches, 1);
    assert.ok(got.every((g) => g.token === 'T1' && g.fresh));
    const again = await cache.get(key, fetch);
    assert.deepEqual(again, { token: 'T1', fresh: false });
    assert.equal(fetches, 1);
  });

  test('keys differ by realm, service and scope', () => {
    const realm = new URL('https://auth/token');
    const keys = new Set([
      TokenCache.key(realm, 'svc', 'repository:a:pull'),
      TokenCache.key(realm, 'svc', 'repository:b:pull'),
      TokenCache.key(realm, 'other', 'repository:a:pull'),
      TokenCache.key(new URL('https://auth2/token'), 'svc', 'repository:a:pull'),
      TokenCache.key(realm, 'svc', undefined),
    ]);
    assert.equal(keys.size, 5);
  });

  test('a token expires at its lifetime minus the margin (injected clock)', async () => {
    const clock = fakeClock(1_000_000);
    const cache = new TokenCache({ now: clock.now });
    let n = 0;
    const fetch = async (): Promise<TokenAnswer> => ({ token: `T${++n}`, expiresInS: 60 });
    assert.equal((await cache.get(key, fetch)).token, 'T1');
    clock.advance(60_000 - TOKEN_EXPIRY_MARGIN_MS - 1);
    assert.equal((await cache.get(key, fetch)).token, 'T1');
    clock.advance(1);
    assert.equal(cache.peek(key), undefined);
    assert.equal((await cache.get(key, fetch)).token, 'T2');
  });

  test('a token the upstream refused is dropped, a different one is kept', async () => {
    const cache = new TokenCache();
    let n = 0;
    const fetch = async (): Promise<TokenAnswer> => ({ token: `T${++n}`, expiresInS: 300 });
    await cache.get(key, fetch);
    assert.deepEqual(await cache.get(key, fetch, 'not-the-cached-one'), { token: 'T1', fresh: false });
    assert.deepEqual(await cache.get(key, fetch, 'T1'), { token: 'T2', fresh: true });
  });

  test('a failed fetch is not cached and reaches every waiting caller', async () => {
    const cache = new TokenCache();
    let fetches = 0;
    const failing = async (): Promise<TokenAnswer> => {
      fetches++;
      await new Promise((r) => setImmediate(r));
      throw new Error('token server down');
    };
    const results = await Promise.allSettled([cache.get(key, failing), cache.get(key, failing)]);
    assert.equal(fetches, 1);
    assert.ok(results.every((r) => r.status === 'rejected'));
    assert.equal(cache.size, 0);
    assert.equal((await cache.get(key, async () => ({ token: 'OK', expiresInS: 60 }))).token, 'OK');
  });

  test('bounded: the oldest entry goes first', async () => {
    const cache = new TokenCache({ maxEntries: 2 });
    const realm = new URL('https://auth/token');
    for (const repo of ['a', 'b', 'c']) {
      await cache.get(TokenCache.key(realm, 's', pullScope(repo)), async () => ({ token: repo, expiresInS: 60 }));
    }
    assert.equal(cache.size, 2);
    assert.equal(cache.peek(TokenCache.key(realm, 's', pullScope('a'))), undefined);
    assert.equal(cache.peek(TokenCache.key(realm, 's', pullScope('c'))), 'c');
  });
});

describe('upstream error mapping', () => {
  const ctx = { upstream: 'up', what: 'manifest a:b', notFound: 'MANIFEST_UNKNOWN' as const };

  test('404 keeps the upstream code and message; NAME_UNKNOWN stays NAME_UNKNOWN', () => {
    const e = statusError(ctx, 404, {}, parseDistributionError(Buffer.from('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')));
    assert.equal(e.code, 'MANIFEST_UNKNOWN');
    assert.equal(e.status, 404);
    assert.equal(e.oci, 'MANIFEST_UNKNOWN');
    assert.equal(e.message, 'manifest unknown');
    const n = statusError(ctx, 404, {}, parseDistributionError(Buffer.from('{"errors":[{"code":"NAME_UNKNOWN","message":"no repo"}]}')));
    assert.equal(n.code, 'NAME_UNKNOWN');
    assert.equal(n.oci, 'NAME_UNKNOWN');
  });

  test('other 4xx pass their status and code; 401/403 are UPSTREAM_DENIED; 5xx are 502', () => {
    const e = statusError(ctx, 400, {}, { code: 'MANIFEST_INVALID', message: 'bad' });
    assert.deepEqual([e.code, e.status, e.oci], ['UPSTREAM_ERROR', 400, 'MANIFEST_INVALID']);
    assert.equal(statusError(ctx, 403, {}, {}).code, 'UPSTREAM_DENIED');
    assert.equal(statusError(ctx, 403, {}, {}).status, 403);
    const s = statusError(ctx, 503, {}, {});
    assert.deepEqual([s.code, s.status], ['UPSTREAM_BAD_RESPONSE', 502]);
    assert.match(s.message, /503/);
  });

  test('429 passes a well-formed Retry-After only', () => {
    assert.deepEqual(statusError(ctx, 429, { 'retry-after': '30' }, {}).headers, { 'Retry-After': '30' });
    assert.deepEqual(statusError(ctx, 429, { 'retry-after': 'Wed, 21 Oct 2015 07:28:00 GMT' }, {}).headers, {
      'Retry-After': 'Wed, 21 Oct 2015 07:28:00 GMT',
    });
    assert.deepEqual(statusError(ctx, 429, { 'retry-after': '<script>' }, {}).headers, {});
  });

  test('an upstream message is flattened and capped; odd codes are dropped', () => {
    const d = parseDistributionError(Buffer.from(JSON.stringify({ errors: [{ code: 'lower case', message: `a\r\nb${'x'.repeat(2000)}` }] })));
    assert.equal(d.code, undefined);
    assert.ok(d.message !== undefined && !/[\r\n]/.test(d.message) && d.message.length < 600);
    assert.deepEqual(parseDistributionError(Buffer.from('404 page not found')), {});
  });
});
