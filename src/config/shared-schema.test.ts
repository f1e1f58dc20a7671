// cache.shared in the config (several sigil processes as one cache): what it compiles to, its
// defaults, and every problem at its exact YAML path.
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { MIN_PEER_TOKEN_CHARS } from './shared-schema.js';
import { configLoader, problemsOf, type Doc } from '../../test/helpers/config-load.js';
import { tempDir } from '../../test/helpers/temp.js';
import { selfSignedCert } from '../../test/helpers/tls.js';

let dir: string;
let certPath: string;
let keyPath: string;
before(async () => {
  dir = await tempDir('sigil-config-shared');
  ({ certPath, keyPath } = await selfSignedCert(dir));
  await mkdir(join(dir, 'config'), { recursive: true });
  await writeFile(join(dir, 'config/peer-ca.pem'), await readFile(certPath));
  await writeFile(join(dir, 'config/not-a-cert.pem'), 'just text\n');
});

const { load, patched, okConfig, rejects } = configLoader(() => dir);

const TOKEN = '0123456789abcdef0123456789abcdef';
const STORE = { dir: 'store', maxBytes: 1 << 30 };
const S3 = { bucket: 'sigil-store' };
const REDIS = { url: 'redis://valkey:6379/0' };
const PEER = { listen: '0.0.0.0:5443', advertise: 'http://10.0.0.12:5443', token: TOKEN };

/** The base config with cache.store and `shared` as cache.shared (and `more` changed by `fn`). */
const withShared = (shared: unknown, fn: (d: Doc) => void = () => {}): Doc => patched((d) => {
  d.cache = { store: STORE, shared };
  fn(d);
});
const withTls = (d: Doc): void => { d.server = { tls: { cert: certPath, key: keyPath } }; };

describe('cache.shared: what it compiles to', () => {
  test('absent: no shared mode', async () => {
    assert.equal(okConfig(await load(patched((d) => { d.cache = { store: STORE }; }))).cache.shared, undefined);
  });

  test('the contract example: s3, redis and peer as written, credentials from the environment', async () => {
    const c = okConfig(await load(withShared({
      s3: {
        endpoint: 'https://s3.eu-west-1.amazonaws.com', region: 'eu-west-1', bucket: 'sigil-store', prefix: 'prod/', forcePathStyle: false,
        credentials: { accessKeyId: '${S3_ACCESS_KEY_ID}', secretAccessKey: '${S3_SECRET_ACCESS_KEY}' },
      },
      redis: { url: 'redis://sigil-redis:6379/0' },
      peer: { listen: '0.0.0.0:5443', advertise: 'https://10.0.0.12:5443', token: '${SIGIL_PEER_TOKEN}' },
    }, withTls), { S3_ACCESS_KEY_ID: 'AKIAEXAMPLE', S3_SECRET_ACCESS_KEY: 'secret/key+value', SIGIL_PEER_TOKEN: TOKEN }));
    assert.deepEqual(c.cache.shared, {
      s3: {
        endpoint: 'https://s3.eu-west-1.amazonaws.com', region: 'eu-west-1', bucket: 'sigil-store', prefix: 'prod/', forcePathStyle: false,
        credentials: { accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 'secret/key+value' }, redirect: false,
      },
      redis: { url: 'redis://sigil-redis:6379/0' },
      peer: { listen: { host: '0.0.0.0', port: 5443 }, advertise: 'https://10.0.0.12:5443', token: TOKEN },
    });
    assert.ok(Object.isFrozen(c.cache.shared?.s3?.credentials));
    assert.ok(Object.isFrozen(c.cache.shared?.peer?.listen));
  });

  test('s3 defaults: AWS\'s endpoint for us-east-1, no prefix, virtual-hosted style, the SDK\'s credential chain, no eviction, no redirect', async () => {
    const c = okConfig(await load(withShared({ s3: S3 })));
    assert.deepEqual(c.cache.shared, { s3: { region: 'us-east-1', bucket: 'sigil-store', prefix: '', forcePathStyle: false, redirect: false } });
  });

  test('the extensions: maxBytes (with redis), redirect, a session token', async () => {
    const c = okConfig(await load(withShared({
      s3: { ...S3, maxBytes: 1099511627776, redirect: true, forcePathStyle: true, credentials: { accessKeyId: 'a', secretAccessKey: 'b', sessionToken: 'c' } },
      redis: REDIS,
    })));
    assert.deepEqual(c.cache.shared?.s3, {
      region: 'us-east-1', bucket: 'sigil-store', prefix: '', forcePathStyle: true,
      credentials: { accessKeyId: 'a', secretAccessKey: 'b', sessionToken: 'c' }, maxBytes: 1099511627776, redirect: true,
    });
  });

  test('a prefix is normalised to end in "/"', async () => {
    for (const [prefix, normalised] of [['prod', 'prod/'], ['prod/', 'prod/'], ['team/prod', 'team/prod/']]) {
      assert.equal(okConfig(await load(withShared({ s3: { ...S3, prefix } }))).cache.shared?.s3?.prefix, normalised, prefix);
    }
  });

  test('redis alone (coordination without a bucket); rediss:// too', async () => {
    assert.deepEqual(okConfig(await load(withShared({ redis: REDIS }))).cache.shared, { redis: REDIS });
    const tls = 'rediss://:p%40ss@valkey.internal:6380';
    assert.deepEqual(okConfig(await load(withShared({ redis: { url: tls } }))).cache.shared, { redis: { url: tls } });
  });

  test('peer: listen parsed, advertise without its trailing slash, [::] listen', async () => {
    const c = okConfig(await load(withShared({ redis: REDIS, peer: { ...PEER, listen: '[::]:5443', advertise: 'http://sigil-1.sigil:5443/' } })));
    assert.deepEqual(c.cache.shared?.peer, { listen: { host: '::', port: 5443 }, advertise: 'http://sigil-1.sigil:5443', token: TOKEN });
  });

  test('peer.ca: read at load (relative to the working directory), its path kept', async () => {
    const c = okConfig(await load(withShared({ redis: REDIS, peer: { ...PEER, advertise: 'https://10.0.0.12:5443', ca: 'config/peer-ca.pem' } }, withTls)));
    assert.equal(c.cache.shared?.peer?.caPath, join(dir, 'config/peer-ca.pem'));
    assert.equal(c.cache.shared?.peer?.ca, await readFile(certPath, 'utf8'));
  });

  test('a token of exactly MIN_PEER_TOKEN_CHARS is enough', async () => {
    okConfig(await load(withShared({ redis: REDIS, peer: { ...PEER, token: 'x'.repeat(MIN_PEER_TOKEN_CHARS) } })));
  });
});

describe('cache.shared: every problem at its path', () => {
  test('needs cache.store (each process\'s first level)', async () => {
    await rejects(patched((d) => { d.cache = { shared: { s3: S3 } }; }), 'cache.shared', /needs cache\.store/);
  });

  test('names neither s3 nor redis', async () => {
    await rejects(withShared({}), 'cache.shared', /names neither s3 nor redis/);
    await rejects(withShared('s3://bucket'), 'cache.shared', /must be a mapping/);
  });

  test('unknown keys, with a suggestion', async () => {
    await rejects(withShared({ s3: S3, reddis: REDIS }), 'cache.shared.reddis', /unknown key \(did you mean 'redis'\?\)/);
    await rejects(withShared({ s3: { ...S3, bucketName: 'x' } }), 'cache.shared.s3.bucketName', /unknown key/);
    await rejects(withShared({ redis: { ...REDIS, password: 'x' } }), 'cache.shared.redis.password', /unknown key/);
    await rejects(withShared({ redis: REDIS, peer: { ...PEER, adverise: 'x' } }), 'cache.shared.peer.adverise', /unknown key \(did you mean 'advertise'\?\)/);
  });

  test('s3.bucket: required, and an S3 bucket name', async () => {
    await rejects(withShared({ s3: { region: 'eu-west-1' } }), 'cache.shared.s3.bucket', /is required/);
    for (const bucket of ['Sigil', 'ab', 'sigil_store', '-sigil', 'sigil-', 'x'.repeat(64), 'sigil..store', '192.168.1.10']) {
      await rejects(withShared({ s3: { bucket } }), 'cache.shared.s3.bucket', /is not a valid bucket name/);
    }
  });

  test('s3.prefix: a relative key prefix', async () => {
    for (const prefix of ['/prod', 'prod//x', '../prod', 'a/./b', 'a\\b', 'a\nb']) {
      await rejects(withShared({ s3: { ...S3, prefix } }), 'cache.shared.s3.prefix', /must be a relative key prefix/);
    }
  });

  test('s3.endpoint: an http(s) URL', async () => {
    await rejects(withShared({ s3: { ...S3, endpoint: 's3.example' } }), 'cache.shared.s3.endpoint', /not a URL/);
    await rejects(withShared({ s3: { ...S3, endpoint: 'ftp://s3.example' } }), 'cache.shared.s3.endpoint', /must be https:\/\/ or http:\/\/, got ftp:/);
  });

  test('s3: typed values', async () => {
    await rejects(withShared({ s3: { ...S3, forcePathStyle: 'yes' } }), 'cache.shared.s3.forcePathStyle', /must be true or false/);
    await rejects(withShared({ s3: { ...S3, redirect: 1 } }), 'cache.shared.s3.redirect', /must be true or false/);
    await rejects(withShared({ s3: { ...S3, maxBytes: '1TiB' }, redis: REDIS }), 'cache.shared.s3.maxBytes', /must be a positive integer/);
    await rejects(withShared({ s3: { ...S3, maxBytes: 0 }, redis: REDIS }), 'cache.shared.s3.maxBytes', /must be a positive integer/);
  });

  test('s3.credentials: both keys, or none (the SDK\'s chain)', async () => {
    await rejects(withShared({ s3: { ...S3, credentials: { accessKeyId: 'a' } } }), 'cache.shared.s3.credentials.secretAccessKey', /is required/);
    await rejects(withShared({ s3: { ...S3, credentials: { secretAccessKey: 'b' } } }), 'cache.shared.s3.credentials.accessKeyId', /is required/);
  });

  test('s3.maxBytes needs redis (one evicting process at a time)', async () => {
    await rejects(withShared({ s3: { ...S3, maxBytes: 1 << 30 } }), 'cache.shared.s3.maxBytes', /needs cache\.shared\.redis/);
  });

  test('redis.url: required, redis:// or rediss://', async () => {
    await rejects(withShared({ redis: {} }), 'cache.shared.redis.url', /is required/);
    await rejects(withShared({ redis: { url: 'http://valkey:6379' } }), 'cache.shared.redis.url', /must be redis:\/\/ or rediss:\/\/, got http:/);
    await rejects(withShared({ redis: { url: 'valkey:6379' } }), 'cache.shared.redis.url', /must be redis:\/\/ or rediss:\/\//);
    // the client would pick a host of its own (localhost)
    for (const url of ['redis://', 'redis:valkey', 'rediss:///0']) await rejects(withShared({ redis: { url } }), 'cache.shared.redis.url', /names no host/);
  });

  test('a refused redis URL does not echo its password', async () => {
    for (const url of ['redis//:hunter2@valkey:6379', 'redis://:ab/cd+hunter2@valkey:6379', 'http://:hunter2@valkey:6379', 'redis://:hunter2@val key:6379']) {
      const r = await load(withShared({ redis: { url } }));
      assert.equal(r.ok, false, url);
      const text = JSON.stringify(problemsOf(r));
      assert.match(text, /cache\.shared\.redis\.url/);
      assert.doesNotMatch(text, /hunter2/, url);
    }
  });

  test('peer needs redis (peers find a blob\'s fetcher through its lease there)', async () => {
    await rejects(withShared({ s3: S3, peer: PEER }), 'cache.shared.peer', /needs cache\.shared\.redis/);
  });

  test('peer: listen, advertise and token are required', async () => {
    for (const key of ['listen', 'advertise', 'token'] as const) {
      const peer: Record<string, string> = { ...PEER };
      delete peer[key];
      await rejects(withShared({ redis: REDIS, peer }), `cache.shared.peer.${key}`, /is required/);
    }
  });

  test('peer.listen: host:port', async () => {
    await rejects(withShared({ redis: REDIS, peer: { ...PEER, listen: '5443' } }), 'cache.shared.peer.listen', /expected host:port/);
    await rejects(withShared({ redis: REDIS, peer: { ...PEER, listen: '0.0.0.0:70000' } }), 'cache.shared.peer.listen', /out of range/);
  });

  test('peer.token: at least MIN_PEER_TOKEN_CHARS characters, also when it comes from the environment', async () => {
    const short = 'x'.repeat(MIN_PEER_TOKEN_CHARS - 1);
    await rejects(withShared({ redis: REDIS, peer: { ...PEER, token: short } }), 'cache.shared.peer.token', new RegExp(`at least ${MIN_PEER_TOKEN_CHARS} characters`));
    await rejects(withShared({ redis: REDIS, peer: { ...PEER, token: '${SIGIL_PEER_TOKEN}' } }), 'cache.shared.peer.token', /at least/, { SIGIL_PEER_TOKEN: short });
  });

  test('environment references: an unset variable is an error at its path', async () => {
    await rejects(withShared({ s3: { ...S3, credentials: { accessKeyId: 'a', secretAccessKey: '${S3_SECRET_ACCESS_KEY}' } } }),
      'cache.shared.s3.credentials.secretAccessKey', /environment variable S3_SECRET_ACCESS_KEY is not set/);
    await rejects(withShared({ redis: { url: 'redis://:${REDIS_PASSWORD}@valkey:6379' } }), 'cache.shared.redis.url', /environment variable REDIS_PASSWORD is not set/);
  });

  test('peer.advertise: scheme://host:port only', async () => {
    for (const advertise of ['http://10.0.0.12:5443/peer', 'http://10.0.0.12:5443?x=1', 'http://10.0.0.12:5443#x', 'http://u@10.0.0.12:5443', 'http://:pw@10.0.0.12:5443']) {
      await rejects(withShared({ redis: REDIS, peer: { ...PEER, advertise } }), 'cache.shared.peer.advertise', /must be scheme:\/\/host:port only/);
    }
    await rejects(withShared({ redis: REDIS, peer: { ...PEER, advertise: 'tcp://10.0.0.12:5443' } }), 'cache.shared.peer.advertise', /must be https:\/\/ or http:\/\//);
    await rejects(withShared({ redis: REDIS, peer: { ...PEER, advertise: '10.0.0.12:5443' } }), 'cache.shared.peer.advertise', /not a URL/);
  });

  test('peer.advertise https needs server.tls (the peer listener serves with its certificate)', async () => {
    await rejects(withShared({ redis: REDIS, peer: { ...PEER, advertise: 'https://10.0.0.12:5443' } }), 'cache.shared.peer.advertise', /needs server\.tls/);
  });

  test('peer.ca: a readable PEM certificate', async () => {
    await rejects(withShared({ redis: REDIS, peer: { ...PEER, ca: 'config/missing.pem' } }), 'cache.shared.peer.ca', /cannot read .*missing\.pem/);
    await rejects(withShared({ redis: REDIS, peer: { ...PEER, ca: 'config/not-a-cert.pem' } }), 'cache.shared.peer.ca', /holds no PEM certificate/);
  });

  test('several problems are all reported, each at its path', async () => {
    const r = await load(patched((d) => { d.cache = { shared: { s3: { bucket: 'B', prefix: '/x', maxBytes: 5 }, peer: { ...PEER, token: 'short' } } }; }));
    assert.deepEqual(problemsOf(r).filter((p) => p.severity === 'error').map((p) => p.path).sort(), [
      'cache.shared', 'cache.shared.peer', 'cache.shared.peer.token', 'cache.shared.s3.bucket', 'cache.shared.s3.maxBytes', 'cache.shared.s3.prefix',
    ]);
  });
});
