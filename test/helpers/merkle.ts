import { createHash } from 'node:crypto';

// The append-only Merkle tree of a transparency log (RFC 6962 2.1) and the signed checkpoints
// (transparency-dev signed notes) that Rekor v1 and v2 both publish, for the tests' private logs.

const sha256 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const leafHash = (leaf: Uint8Array): Buffer => sha256(Buffer.from([0x00]), leaf);
const nodeHash = (l: Uint8Array, r: Uint8Array): Buffer => sha256(Buffer.from([0x01]), l, r);
/** Largest power of two strictly smaller than n (n >= 2). */
const splitPoint = (n: number): number => 2 ** Math.floor(Math.log2(n - 1));
/** Signed-note key hint: the first 4 bytes of the key ID. */
const KEY_HINT_BYTES = 4;

function merkleRoot(leaves: Buffer[]): Buffer {
  if (leaves.length === 1) return leaves[0];
  const k = splitPoint(leaves.length);
  return nodeHash(merkleRoot(leaves.slice(0, k)), merkleRoot(leaves.slice(k)));
}

/** RFC 6962 2.1.1 PATH(m, D[n]) over leaf hashes, ordered leaf to root. */
function auditPath(m: number, leaves: Buffer[]): Buffer[] {
  if (leaves.length <= 1) return [];
  const k = splitPoint(leaves.length);
  return m < k
    ? [...auditPath(m, leaves.slice(0, k)), merkleRoot(leaves.slice(k))]
    : [...auditPath(m - k, leaves.slice(k)), merkleRoot(leaves.slice(0, k))];
}

/** Where a leaf sits in the tree right after it was appended. */
export interface MerkleInclusion {
  logIndex: number;
  treeSize: number;
  rootHash: Buffer;
  /** Leaf to root (RFC 6962 audit path). */
  hashes: Buffer[];
}

/** A log's leaves; each append answers with the inclusion of the new leaf in the tree it makes. */
export class MerkleLog {
  readonly #leaves: Buffer[] = [];

  append(leaf: Uint8Array): MerkleInclusion {
    const logIndex = this.#leaves.length;
    this.#leaves.push(leafHash(leaf));
    const leaves = this.#leaves.slice();
    return { logIndex, treeSize: leaves.length, rootHash: merkleRoot(leaves), hashes: auditPath(logIndex, leaves) };
  }
}

/**
 * A signed note (transparency-dev/formats log checkpoint): `<origin>\n<size>\n<root b64>\n`, a
 * blank line, and `— <name> <b64(key hint || signature)>`. `sign` signs the note text.
 */
export function signedCheckpoint(origin: string, inclusion: MerkleInclusion, signer: { name: string; keyId: Buffer; sign(note: Buffer): Buffer }): string {
  const note = `${origin}\n${inclusion.treeSize}\n${inclusion.rootHash.toString('base64')}\n`;
  const sig = signer.sign(Buffer.from(note, 'utf8'));
  return `${note}\n\u2014 ${signer.name} ${Buffer.concat([signer.keyId.subarray(0, KEY_HINT_BYTES), sig]).toString('base64')}\n`;
}
