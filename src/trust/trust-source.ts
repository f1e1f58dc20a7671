/**
 * The trust material verification uses now: the configured trusted roots (the floor, read at
 * start) plus, with `trust.tuf`, the trusted root last verified from the TUF repository. The
 * verifier reads `current()` once per verification; when the repository brings a new root the
 * next `current()` merges it in (one assignment: a verification runs under one bundle from
 * start to end). The bundle's fingerprint keys the verdict cache, so nothing decided under the
 * old trust is reused under the new one.
 */
import { mergeTrust, type LoadedRoot, type TrustBundle } from '../verify/index.js';

/** A TUF root as the refresher holds it (tuf-refresher.ts). */
export interface TufRoot {
  readonly url: string;
  readonly rootVersion: number;
  readonly verifiedAt: number;
  /** Parsed and checked (verify/trust.ts parseTrustedRoot); the same object while its content is the same. */
  readonly root: LoadedRoot;
}

/** What holds the latest TUF root (the refresher); null while there is none. */
export interface TufRootHolder {
  readonly latest: TufRoot | null;
}

/** Where a verifier takes its trust material from, at each verification. */
export interface CurrentTrust {
  current(): TrustBundle;
}

/** The `sources` entry of a TUF root. */
export const tufSource = (url: string): string => `tuf ${url}`;

export class TrustSource implements CurrentTrust {
  readonly #floor: readonly LoadedRoot[];
  readonly #sources: readonly string[];
  readonly #tuf: TufRootHolder | undefined;
  #bundle: TrustBundle;
  /** The TUF root #bundle holds (null: the floor alone). */
  #merged: LoadedRoot | null = null;

  /** `floor`: the configured roots (readTrustedRoots), `sources` their entries; `tuf`: the refresher, when configured. */
  constructor(floor: readonly LoadedRoot[], sources: readonly string[], tuf?: TufRootHolder) {
    this.#floor = floor;
    this.#sources = sources;
    this.#tuf = tuf;
    this.#bundle = mergeTrust(floor, sources);
  }

  current(): TrustBundle {
    const latest = this.#tuf?.latest ?? null;
    if (latest !== null && latest.root !== this.#merged) {
      this.#bundle = mergeTrust([...this.#floor, latest.root], [...this.#sources, tufSource(latest.url)]);
      this.#merged = latest.root;
    }
    return this.#bundle;
  }
}
