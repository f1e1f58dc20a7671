/**
 * Evaluating an attestation condition (config/condition.ts compiles it) over a statement whose
 * signature verified, bounded in time: @bufbuild/cel has no cost limit, so the evaluation runs
 * under node:vm's `timeout`, whose watchdog interrupts any JavaScript on the thread — the
 * evaluator's own loops included — and the conditions of one verification share one budget
 * (CONDITION_BUDGET_MS). Whatever happens — false, not a bool, an error, the budget spent —
 * the condition is not met, with the reason; nothing throws.
 */
import { Script, createContext } from 'node:vm';
import type { Condition } from '../config/condition.js';
import { CONDITION_BUDGET_MS } from './limits.js';

/** The time the conditions of one verification have left, spent as they run. */
export interface ConditionBudget {
  remainingMs: number;
  readonly totalMs: number;
}

export function conditionBudget(totalMs = CONDITION_BUDGET_MS): ConditionBudget {
  return { remainingMs: totalMs, totalMs };
}

export type ConditionResult = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/**
 * Characters of an evaluation error's message kept in a reason: CEL's messages may quote the
 * statement (a key looked up), and the reason goes into a denial's body, its log line and headers.
 */
const MESSAGE_SHOWN = 300;

function clipped(message: string): string {
  return message.length > MESSAGE_SHOWN ? `${message.slice(0, MESSAGE_SHOWN)}…` : message;
}

/** One context and one script for every evaluation: the script only calls what `run` holds. */
const context = createContext({ run: undefined as undefined | (() => unknown) });
const script = new Script('run()', { filename: 'sigil-attestation-condition' });

/** A verified statement bound as a condition's variables, converted once for all its conditions. */
export interface BoundStatement {
  readonly statement: unknown;
  readonly predicate: unknown;
}

/**
 * JSON as CEL sees it (its JSON mapping, google.protobuf.Value: objects are maps, numbers
 * doubles). @bufbuild/cel converts plain objects itself, as they are read, but takes one with a
 * `$typeName` key for a protobuf message and refuses one whose `constructor` key is not Object's:
 * those (only) become Maps. The rest is returned as is, without a copy.
 */
function celValue(v: unknown): unknown {
  if (Array.isArray(v)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const x = celValue(v[i]);
      if (x !== v[i]) (copy ??= v.slice())[i] = x;
    }
    return copy ?? v;
  }
  if (v === null || typeof v !== 'object') return v;
  const o = v as Record<string, unknown>;
  let changed = Object.hasOwn(o, 'constructor') || Object.hasOwn(o, '$typeName');
  const values = new Map<string, unknown>();
  for (const k of Object.keys(o)) {
    const x = celValue(o[k]);
    if (x !== o[k]) changed = true;
    values.set(k, x);
  }
  return changed ? values : v;
}

function described(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'bigint') return `the int ${v}`;
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v === 'number') return `the double ${v}`;
  return typeof v === 'object' ? 'a list or map' : `a ${typeof v}`;
}

/**
 * The variables of a statement: `statement`, and `predicate` (the statement's, or null). The
 * conversion is linear in the statement (at most STATEMENT_MAX_BYTES), so it runs outside the budget.
 */
export function bindStatement(statement: Readonly<Record<string, unknown>>): BoundStatement {
  const bound = celValue(statement);
  const predicate = bound instanceof Map ? bound.get('predicate') : (bound as Record<string, unknown>).predicate;
  return { statement: bound, predicate: predicate ?? null };
}

/**
 * Evaluates `condition` over a bound statement within what is left of `budget`. The statement is
 * the verified one: never evaluate over unsigned data.
 */
export function runCondition(condition: Condition, bound: BoundStatement, budget: ConditionBudget): ConditionResult {
  if (budget.remainingMs <= 0) return { ok: false, reason: `not evaluated: the conditions of this verification used up their ${budget.totalMs} ms` };
  const t0 = performance.now();
  let value: unknown;
  try {
    context.run = () => condition.evaluate(bound as never);
    value = script.runInContext(context, { timeout: Math.max(1, Math.ceil(budget.remainingMs)) });
  } catch (e) {
    if ((e as { code?: unknown }).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') {
      // Interrupted at the budget: it is used up, whatever the clock read around the call says
      // (the watchdog's timer and performance.now() need not agree to the millisecond).
      budget.remainingMs = 0;
      return { ok: false, reason: `did not finish within the ${budget.totalMs} ms the conditions of one verification may take` };
    }
    return { ok: false, reason: `could not be evaluated: ${clipped(e instanceof Error ? e.message : String(e))}` };
  } finally {
    context.run = undefined;
    budget.remainingMs -= performance.now() - t0;
  }
  if (value === true) return { ok: true };
  if (value === false) return { ok: false, reason: 'is false' };
  if (value instanceof Error) return { ok: false, reason: `could not be evaluated: ${clipped(value.message)}` };
  return { ok: false, reason: `gave ${described(value)}, not a bool` };
}
