import { SigilError } from '../errors.js';

/**
 * The deadline of one decision's upstream reads (a signature artifact's blobs, then signature
 * discovery): `signal` aborts `ms` after it was started, with an UPSTREAM_TIMEOUT that says what
 * was under way then (`doing`, set as the decision moves on: "<doing> within the <ms> ms
 * deadline"). `clear()` once the decision is done.
 */
export class DecisionDeadline {
  readonly ms: number;
  /** What the decision is doing now, as it reads when not done: "signatures of … not verified". */
  doing: string;
  readonly #controller = new AbortController();
  readonly #timer: NodeJS.Timeout;

  constructor(ms: number, doing: string) {
    this.ms = ms;
    this.doing = doing;
    this.#timer = setTimeout(() => {
      this.#controller.abort(new SigilError({ code: 'UPSTREAM_TIMEOUT', message: `${this.doing} within the ${ms} ms deadline` }));
    }, ms);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  clear(): void {
    clearTimeout(this.#timer);
  }
}
