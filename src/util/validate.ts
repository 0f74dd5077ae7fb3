// The validation kit: checks of numeric and enumerated options that throw an error naming the field
// and the value ("batchSize must be a positive integer, got 0"). The lowest module of the tree
// (it imports nothing), so every layer uses it instead of writing the check and its message again.
// `name` carries whatever locates the field ("FeatureMLP: hidden", "meta.json: numClasses"); a
// caller with its own error type (ConfigError, UsageError) passes a factory for it.

/** Builds the error for `field`, given the problem ("must be a positive integer, got 0"). */
export type ValidationErrorFactory = (field: string, problem: string) => Error;

const rangeError: ValidationErrorFactory = (field, problem) => new RangeError(`${field} ${problem}`);

/** A value as error messages show it: numbers plainly, strings quoted, the rest as JSON. */
export function describeValue(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'bigint' || value === undefined) return String(value);
  if (typeof value === 'function' || typeof value === 'symbol') return String(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function check<T>(ok: boolean, value: unknown, name: string, expected: string, makeError: ValidationErrorFactory): T {
  if (!ok) throw makeError(name, `must be ${expected}, got ${describeValue(value)}`);
  return value as T;
}

/** An integer (any sign, safe range). */
export function integer(value: unknown, name: string, makeError = rangeError): number {
  return check(Number.isSafeInteger(value), value, name, 'an integer', makeError);
}

/** An integer >= 1. */
export function positiveInteger(value: unknown, name: string, makeError = rangeError): number {
  return check(Number.isSafeInteger(value) && (value as number) >= 1, value, name, 'a positive integer', makeError);
}

/** An integer >= 0. */
export function nonNegativeInteger(value: unknown, name: string, makeError = rangeError): number {
  return check(Number.isSafeInteger(value) && (value as number) >= 0, value, name, 'a non-negative integer', makeError);
}

/** An integer >= min. */
export function integerAtLeast(value: unknown, name: string, min: number, makeError = rangeError): number {
  return check(Number.isSafeInteger(value) && (value as number) >= min, value, name, `an integer >= ${min}`, makeError);
}

/** An integer in [min, max] (both ends included). */
export function integerInRange(value: unknown, name: string, min: number, max: number, makeError = rangeError): number {
  return check(Number.isSafeInteger(value) && (value as number) >= min && (value as number) <= max, value, name, `an integer in [${min}, ${max}]`, makeError);
}

/** A finite number > 0. */
export function positiveNumber(value: unknown, name: string, makeError = rangeError): number {
  return check(typeof value === 'number' && Number.isFinite(value) && value > 0, value, name, 'a positive number', makeError);
}

/** A finite number >= 0. */
export function nonNegativeNumber(value: unknown, name: string, makeError = rangeError): number {
  return check(typeof value === 'number' && Number.isFinite(value) && value >= 0, value, name, 'a non-negative number', makeError);
}

/** A finite number. */
export function finiteNumber(value: unknown, name: string, makeError = rangeError): number {
  return check(typeof value === 'number' && Number.isFinite(value), value, name, 'a finite number', makeError);
}

export interface NumberRange {
  min: number;
  max: number;
  /** Exclude min itself: (min, ...]. */
  minExclusive?: boolean;
  /** Exclude max itself: [..., max). */
  maxExclusive?: boolean;
}

/** A number within `range`, e.g. { min: 0, max: 1, maxExclusive: true } for a dropout probability in [0, 1). */
export function inRange(value: unknown, name: string, range: NumberRange, makeError = rangeError): number {
  const { min, max, minExclusive = false, maxExclusive = false } = range;
  const ok = typeof value === 'number' && (minExclusive ? value > min : value >= min) && (maxExclusive ? value < max : value <= max);
  return check(ok, value, name, `in ${minExclusive ? '(' : '['}${min}, ${max}${maxExclusive ? ')' : ']'}`, makeError);
}

/** One of the allowed strings. */
export function oneOf<T extends string>(value: unknown, name: string, choices: readonly T[], makeError = rangeError): T {
  return check(typeof value === 'string' && (choices as readonly string[]).includes(value), value, name, `one of ${choices.join(', ')}`, makeError);
}
