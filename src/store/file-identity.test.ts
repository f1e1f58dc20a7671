import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ctimeTracksWrites, sameIdentity, trustable, type FileIdentity } from './file-identity.js';

// What tells one state of a stored file from another (fstat), when a file is old enough to be
// trusted after a hashing read, and on which file systems trust is used at all.

const base: FileIdentity = { dev: 1n, ino: 2n, size: 3n, mtimeNs: 4_000_000_000n, ctimeNs: 5_000_000_000n };

test('an identity differs when any of device, inode, size, mtime or ctime does', () => {
  assert.ok(sameIdentity(base, { ...base }));
  for (const k of ['dev', 'ino', 'size', 'mtimeNs', 'ctimeNs'] as const) {
    assert.equal(sameIdentity(base, { ...base, [k]: base[k] + 1n }), false, k);
  }
});

test('a file is trustable only when its last change is at least the minimum age older than the read (to the nanosecond)', () => {
  const ctimeMs = 5_000; // base.ctimeNs
  assert.equal(trustable(base, ctimeMs + 2_000, 2_000), true, 'exactly the age');
  assert.equal(trustable(base, ctimeMs + 1_999, 2_000), false, 'a millisecond short');
  assert.equal(trustable({ ...base, ctimeNs: base.ctimeNs + 1n }, ctimeMs + 2_000, 2_000), false, 'a nanosecond short');
  assert.equal(trustable(base, ctimeMs - 10_000, 2_000), false, 'a ctime in the future');
});

test('trust is used on local disk file systems only (statfs types), never on tmpfs, network, FUSE or overlay ones', () => {
  for (const t of [0xef53, 0x58465342, 0x9123683e, 0xf2f52010]) assert.equal(ctimeTracksWrites(t), true, t.toString(16));
  const others = {
    tmpfs: 0x01021994,
    ramfs: 0x858458f6,
    nfs: 0x6969,
    cifs: 0xff534d42,
    smb2: 0xfe534d42,
    fuse: 0x65735546,
    overlayfs: 0x794c7630,
    zfs: 0x2fc12fc1,
    unknown: 0,
  };
  for (const [name, t] of Object.entries(others)) assert.equal(ctimeTracksWrites(t), false, name);
});
