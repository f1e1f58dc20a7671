import { createHash } from 'node:crypto';
import bcrypt from 'bcryptjs';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { lru } from '../lru.js';
import { SigilError } from '../errors.js';

/** bcrypt costs ~50-100 ms of CPU per check; remember good credentials this long. */
export const AUTH_CACHE_TTL_MS = 60_000;
/** Distinct good credentials remembered at once. */
export const AUTH_CACHE_MAX = 1_000;
/** A Basic header longer than this is refused unparsed (no bcrypt work for junk). */
export const AUTH_HEADER_MAX_BYTES = 4_096;

/**
 * Checks client Basic credentials against htpasswd bcrypt entries. Only successful
 * checks are cached, keyed by a hash of user and password, so a changed password
 * in a reloaded file (a new checker) never reuses an old result.
 */
export class BasicAuthChecker {
  readonly #users: ReadonlyMap<string, string>;
  readonly #good = lru<string, true>(AUTH_CACHE_MAX, { ttl: AUTH_CACHE_TTL_MS });

  constructor(users: ReadonlyMap<string, string>) {
    this.#users = users;
  }

  /** Resolves to the user name when `authorization` carries valid credentials, else null. */
  async check(authorization: string | undefined): Promise<string | null> {
    if (!authorization || authorization.length > AUTH_HEADER_MAX_BYTES) return null;
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization);
    if (!m) return null;
    const decoded = Buffer.from(m[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) return null;
    const user = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    const hash = this.#users.get(user);
    if (hash === undefined) {
      // Spend comparable time on unknown users so timing does not reveal which names exist.
      await bcrypt.compare(password, DUMMY_HASH);
      return null;
    }
    const key = createHash('sha256').update(user).update('\0').update(password).update('\0').update(hash).digest('hex');
    if (this.#good.get(key)) return user;
    const ok = await bcrypt.compare(password, normaliseBcryptPrefix(hash));
    if (!ok) return null;
    this.#good.set(key, true);
    return user;
  }
}

/**
 * The check in front of every route that serves registry content: without valid credentials
 * the request ends here with 401 UNAUTHORIZED and a Basic challenge.
 */
export async function requireCredentials(checker: BasicAuthChecker, req: FastifyRequest, reply: FastifyReply): Promise<void> {
  if ((await checker.check(req.headers.authorization)) !== null) return;
  reply.header('www-authenticate', 'Basic realm="sigil"');
  throw new SigilError({ code: 'UNAUTHORIZED', message: 'authentication required' });
}

// htpasswd -B writes $2y$; bcryptjs understands $2a$/$2b$, the same algorithm.
function normaliseBcryptPrefix(hash: string): string {
  return hash.startsWith('$2y$') ? `$2b$${hash.slice(4)}` : hash;
}

// bcrypt of a random string, cost 10 (htpasswd -B's default).
const DUMMY_HASH = '$2b$10$CwTycUXWue0Thq9StjUM0uJ8.pe4F3Fg1b1bqGJ0wWzpjY0Zpb6Z2';
