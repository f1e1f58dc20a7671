// trust.tuf in the config: its defaults, the cache dir it needs, and every problem at its path.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { formatProblems, loadConfigFromText, type LoadResult } from './load.js';
import { DEFAULT_TUF_REFRESH_MS, MIN_TUF_REFRESH_MS, PUBLIC_GOOD_TUF_URL } from './tuf-schema.js';
import type { Config } from './types.js';
import { tempDir } from '../../test/helpers/temp.js';

let dir: string;
before(async () => {
  dir = await tempDir('sigil-config-tuf');
  await mkdir(join(dir, 'config/tuf'), { recursive: true });
  await writeFile(join(dir, 'config/tuf/root.json'), JSON.stringify({ signatures: [], signed: { _type: 'root', version: 1 } }));
  await writeFile(join(dir, 'config/tuf/targets.json'), JSON.stringify({ signatures: [], signed: { _type: 'targets', version: 1 } }));
  await writeFile(join(dir, 'config/tuf/broken.json'), '{');
});

const BASE = {
  upstreams: [{ name: 'ghcr.io', url: 'https://ghcr.io' }],
  policies: [{ name: 'p', match: ['ghcr.io/**'], mode: 'warn', authorities: [{ keyless: { issuer: 'https://issuer.example', subject: 'me@example.com' } }] }],
};

function load(tuf: unknown, more: Record<string, unknown> = {}): Promise<LoadResult> {
  return loadConfigFromText(stringify({ ...BASE, trust: { tuf }, ...more }), { source: 'test.yaml', env: {}, baseDir: dir });
}

function ok(r: LoadResult): Config {
  assert.ok(r.ok, r.ok ? '' : formatProblems(r.problems, r.source));
  return r.config;
}

async function refused(tuf: unknown, path: string, message: RegExp, more: Record<string, unknown> = {}): Promise<void> {
  const r = await load(tuf, more);
  assert.equal(r.ok, false, `expected ${path} to be refused`);
  const errors = r.ok ? [] : r.problems.filter((p) => p.severity === 'error');
  assert.deepEqual(errors.map((e) => e.path), [path], formatProblems(errors, 'test.yaml'));
  assert.match(errors[0].message, message);
}

describe('trust.tuf', () => {
  test('absent: no TUF repository (nothing is ever fetched)', async () => {
    const r = await loadConfigFromText(stringify(BASE), { source: 'test.yaml', env: {}, baseDir: dir });
    assert.equal(ok(r).trust.tuf, undefined);
  });

  test('the contract example: url, root and cacheDir resolved against the working directory, refresh parsed', async () => {
    const c = ok(await load({ url: 'https://tuf.internal/sigstore/', root: 'config/tuf/root.json', cacheDir: 'var/tuf', refresh: '12h' }));
    assert.deepEqual(c.trust.tuf, { url: 'https://tuf.internal/sigstore', rootPath: join(dir, 'config/tuf/root.json'), cacheDir: join(dir, 'var/tuf'), refreshMs: 12 * 3_600_000 });
    assert.ok(Object.isFrozen(c.trust.tuf));
  });

  test('defaults: public-good\'s repository and root, daily, the cache under the content store', async () => {
    const c = ok(await load({}, { cache: { store: { dir: 'store', maxBytes: 1 << 30 } } }));
    assert.deepEqual(c.trust.tuf, { url: PUBLIC_GOOD_TUF_URL, cacheDir: join(dir, 'store', 'tuf'), refreshMs: DEFAULT_TUF_REFRESH_MS });
    assert.deepEqual(c.trust.trustedRoot, ['public-good'], 'the configured roots stay the floor');
  });

  test('without a content store, cacheDir is required', async () => {
    await refused({}, 'trust.tuf.cacheDir', /is required without cache\.store/);
  });

  test('url: http(s), without query, fragment or credentials', async () => {
    await refused({ url: 'ftp://tuf.example', cacheDir: 't' }, 'trust.tuf.url', /must be http:\/\/ or https:\/\//);
    await refused({ url: 'https://tuf.example/?x=1', cacheDir: 't' }, 'trust.tuf.url', /no query, fragment or credentials/);
    await refused({ url: 'https://u:p@tuf.example', cacheDir: 't' }, 'trust.tuf.url', /no query, fragment or credentials/);
    await refused({ url: 'not a url', cacheDir: 't' }, 'trust.tuf.url', /not a URL/);
  });

  test('refresh: a duration of at least MIN_TUF_REFRESH_MS', async () => {
    await refused({ cacheDir: 't', refresh: 'daily' }, 'trust.tuf.refresh', /must be a duration/);
    await refused({ cacheDir: 't', refresh: '10s' }, 'trust.tuf.refresh', new RegExp(`at least ${MIN_TUF_REFRESH_MS / 1000}s`));
  });

  test('root: a readable TUF root.json', async () => {
    await refused({ cacheDir: 't', root: 'config/tuf/missing.json' }, 'trust.tuf.root', /cannot read .*missing\.json/);
    await refused({ cacheDir: 't', root: 'config/tuf/broken.json' }, 'trust.tuf.root', /is not JSON/);
    await refused({ cacheDir: 't', root: 'config/tuf/targets.json' }, 'trust.tuf.root', /is not a TUF root\.json \(signed\._type is "targets"\)/);
  });

  test('unknown keys are refused with a suggestion', async () => {
    await refused({ cacheDir: 't', refrsh: '1h' }, 'trust.tuf.refrsh', /unknown key \(did you mean 'refresh'\?\)/);
    await refused('https://tuf.example', 'trust.tuf', /must be a mapping/);
  });
});
