// Evaluating a condition over a verified statement: only `true` meets it; false, another type, an
// error and a condition that runs past the verification's budget each fail with their reason,
// never a throw, never a hang.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_CONDITION_ALLOCATION, compileCondition, type Condition } from '../config/condition.js';
import { bindStatement, conditionBudget, runCondition } from './condition-run.js';
import { CONDITION_BUDGET_MS } from './limits.js';

function condition(text: string): Condition {
  const c = compileCondition(text);
  if ('problems' in c) throw new Error(c.problems.join('; '));
  return c;
}

const statement = {
  _type: 'https://in-toto.io/Statement/v1',
  predicateType: 'https://slsa.dev/provenance/v1',
  subject: [{ name: 'x', digest: { sha256: 'ab'.repeat(32) } }],
  predicate: { runDetails: { builder: { id: 'https://github.com/acme/ci' } }, count: 3 },
};

describe('results', () => {
  test('true meets the condition; `predicate` is the statement\'s and `statement` the whole', () => {
    const c = condition('predicate.runDetails.builder.id == "https://github.com/acme/ci" && statement.subject[0].digest.sha256.size() == 64');
    assert.deepEqual(runCondition(c, bindStatement(statement), conditionBudget()), { ok: true });
  });

  test('false: "is false"', () => {
    assert.deepEqual(runCondition(condition('predicate.runDetails.builder.id.startsWith("https://github.com/evil/")'), bindStatement(statement), conditionBudget()), { ok: false, reason: 'is false' });
  });

  test('a value that is not a bool (only known once the statement is there) fails', () => {
    assert.deepEqual(runCondition(condition('predicate.runDetails.builder.id'), bindStatement(statement), conditionBudget()), {
      ok: false,
      reason: 'gave the string "https://github.com/acme/ci", not a bool',
    });
  });

  test('an error at evaluation (a field the statement lacks) fails closed with CEL\'s message', () => {
    const r = runCondition(condition('predicate.buildDefinition.buildType == "x"'), bindStatement(statement), conditionBudget());
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.reason, /^could not be evaluated: .*buildDefinition/);
  });

  test('an error quoting the statement (a long key looked up) is cut short in the reason', () => {
    const r = runCondition(condition('predicate.m[predicate.k] == 1'), bindStatement({ ...statement, predicate: { m: {}, k: 'k'.repeat(100_000) } }), conditionBudget());
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.reason, /^could not be evaluated: .*k…$/);
    assert.equal((r.ok ? '' : r.reason).length < 400, true);
  });

  test('a statement without a predicate binds predicate to null', () => {
    const { predicate: _, ...bare } = statement;
    assert.deepEqual(runCondition(condition('predicate == null'), bindStatement(bare), conditionBudget()), { ok: true });
  });

  test('JSON numbers are doubles (CEL\'s JSON mapping): compared with ints, added to doubles', () => {
    assert.deepEqual(runCondition(condition('predicate.count == 3 && predicate.count > 2 && predicate.count + 1.0 == 4.0'), bindStatement(statement), conditionBudget()), { ok: true });
  });

  test('keys that mean something to the evaluator in a plain object ($typeName, constructor) are plain keys', () => {
    const tricky = {
      ...statement,
      predicate: { $typeName: 'google.protobuf.BoolValue', value: true, constructor: 'x', items: [{ inner: { constructor: 'y', $typeName: 'google.protobuf.Int64Value', value: '3' } }] },
    };
    const c = condition('predicate["$typeName"] == "google.protobuf.BoolValue" && predicate.constructor == "x" && predicate.items[0].inner.constructor == "y" && predicate.items[0].inner.value == "3"');
    assert.deepEqual(runCondition(c, bindStatement(tricky), conditionBudget()), { ok: true });
    assert.deepEqual(runCondition(condition('predicate == true'), bindStatement(tricky), conditionBudget()), { ok: false, reason: 'is false' });
  });
});

describe('bounded in time', () => {
  const big = { ...statement, predicate: { list: Array.from({ length: 20_000 }, (_, i) => i) } };
  const quadratic = condition('predicate.list.all(x, predicate.list.all(y, x + y >= 0.0))');

  test(`the default budget is CONDITION_BUDGET_MS (${CONDITION_BUDGET_MS} ms) for all the conditions of one verification`, () => {
    assert.deepEqual(conditionBudget(), { remainingMs: CONDITION_BUDGET_MS, totalMs: CONDITION_BUDGET_MS });
  });

  test('a condition whose macros nest over a large list is interrupted at the budget and fails; the next one is not evaluated', () => {
    const budget = conditionBudget(50);
    assert.deepEqual(runCondition(quadratic, bindStatement(big), budget), { ok: false, reason: 'did not finish within the 50 ms the conditions of one verification may take' });
    assert.equal(budget.remainingMs <= 0, true);
    assert.deepEqual(runCondition(condition('true'), bindStatement(big), budget), { ok: false, reason: 'not evaluated: the conditions of this verification used up their 50 ms' });
  });

  test('after an interrupted evaluation the evaluator still works', () => {
    runCondition(quadratic, bindStatement(big), conditionBudget(20));
    assert.deepEqual(runCondition(condition('predicate.list.size() == 20000'), bindStatement(big), conditionBudget()), { ok: true });
  });
});

describe('bounded in memory', () => {
  /** These specs are about memory, not time: a budget a loaded machine cannot use up. */
  const untimed = () => conditionBudget(10 * 60_000);

  test('concatenation and string/bytes conversion still work as CEL defines them', () => {
    const c = condition('"a" + "b" == "ab" && b"x" + b"y" == b"xy" && bytes("é") == b"\\xc3\\xa9" && string(b"abc") == "abc"');
    assert.deepEqual(runCondition(c, bindStatement(statement), conditionBudget()), { ok: true });
    const r = runCondition(condition('string(b"\\xff") == "x"'), bindStatement(statement), conditionBudget());
    assert.equal(r.ok, false, 'bytes that are not UTF-8 are no string');
  });

  test(`a condition that makes copies of the statement's data in a macro stops at MAX_CONDITION_ALLOCATION (${MAX_CONDITION_ALLOCATION}) and fails`, () => {
    const data = { ...statement, predicate: { text: 'x'.repeat(100_000), list: Array.from({ length: 1_000 }, (_, i) => i) } };
    for (const text of ['predicate.list.map(x, predicate.text + string(x)).size() > 0', 'predicate.list.map(x, bytes(predicate.text)).size() > 0']) {
      const r = runCondition(condition(text), bindStatement(data), untimed());
      assert.equal(r.ok, false, text);
      assert.match(r.ok ? '' : r.reason, /^could not be evaluated: .*the condition created more than 16777216 characters of strings and bytes \(MAX_CONDITION_ALLOCATION\)/);
    }
  });

  test('the count starts again with each evaluation', () => {
    const data = { ...statement, predicate: { text: 'x'.repeat(MAX_CONDITION_ALLOCATION / 4) } };
    const c = condition('(predicate.text + predicate.text).size() > 0');
    for (let i = 0; i < 3; i++) assert.deepEqual(runCondition(c, bindStatement(data), untimed()), { ok: true });
  });
});
