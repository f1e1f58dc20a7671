import { isSigilError } from '../../src/errors.js';

/** The SigilError code `fn` throws, or 'no error'; anything else it throws is rethrown. */
export function thrownCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (isSigilError(e)) return e.code;
    throw e;
  }
  return 'no error';
}
