/**
 * Waits for `p`, or rejects with the signal's reason as soon as the signal aborts (at once when
 * it already has). The work behind `p` is not ours to stop (an upstream request runs on under its
 * own timeouts); whatever it yields after the abort is handed to `discard`, so that a late answer
 * (a blob stream) is closed instead of left open.
 */
export function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined, discard?: (late: T) => void): Promise<T> {
  if (signal === undefined) return p;
  const drop = (): void => {
    p.then(discard, () => undefined).catch(() => undefined);
  };
  if (signal.aborted) {
    drop();
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      drop();
      reject(signal.reason as Error);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e as Error);
      },
    );
  });
}
