// One verified fetch of `trusted_root.json` through @sigstore/tuf, from a repository the test
// signs and serves on 127.0.0.1: what it asks for, what it returns, and the initial root it
// starts from when none is configured (public-good's, as @sigstore/tuf ships it).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fetchTrustedRoot } from './tuf-repository.js';
import { tempDir } from '../../test/helpers/temp.js';
import { serveTufRepo, TufRepo, type TufServer } from '../../test/helpers/tuf-repo.js';

const TARGET = '{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}';
const servers: TufServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

async function served(): Promise<{ repo: TufRepo; server: TufServer }> {
  const repo = await TufRepo.create({ 'trusted_root.json': TARGET });
  const server = await serveTufRepo(repo.dir);
  servers.push(server);
  return { repo, server };
}

describe('fetchTrustedRoot', () => {
  test('returns the target as served and the root version it was verified under; a second fetch reuses the cached target', async () => {
    const { repo, server } = await served();
    const config = { url: server.url, rootPath: repo.initialRootPath, cacheDir: await tempDir('sigil-tuf-cache'), refreshMs: 60_000 };
    assert.deepEqual(await fetchTrustedRoot(config), { trustedRoot: TARGET, rootVersion: 1 });
    const first = server.requests.length;
    await repo.rotateRoot();
    assert.deepEqual(await fetchTrustedRoot(config), { trustedRoot: TARGET, rootVersion: 2 });
    assert.ok(!server.requests.slice(first).some((p) => p.startsWith('/targets/')), 'the cached target still matches its signed hashes');
  });

  test('without a configured root: public-good\'s, as @sigstore/tuf ships it, is the initial root, and metadata it did not sign is refused', async () => {
    const { server } = await served();
    const cacheDir = await tempDir('sigil-tuf-cache');
    await assert.rejects(fetchTrustedRoot({ url: server.url, cacheDir, refreshMs: 60_000 }), /timestamp was signed by 0\/\d keys/);
    const seeded = JSON.parse(await readFile(join(cacheDir, 'public-good-root.json'), 'utf8')) as { signed: { _type: string; version: number } };
    assert.equal(seeded.signed._type, 'root');
    assert.equal(server.requests[0], `/${seeded.signed.version + 1}.root.json`);
  });

  test('a repository that is not there: the fetch fails (nothing is returned)', async () => {
    const { repo, server } = await served();
    await server.close();
    servers.splice(servers.indexOf(server), 1);
    await assert.rejects(fetchTrustedRoot({ url: server.url, rootPath: repo.initialRootPath, cacheDir: await tempDir('sigil-tuf-cache'), refreshMs: 60_000 }), /fetch failed/);
  });
});
