import { codedError } from './errors';

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') return `function ${value.name || '<anonymous>'}`;
  if (typeof value === 'object') {
    // A null-prototype object, a Proxy or a throwing getter must not turn an argument error into another error.
    try {
      const name: unknown = (value as { constructor?: { name?: unknown } }).constructor?.name;
      return `an instance of ${typeof name === 'string' && name !== '' ? name : 'Object'}`;
    } catch {
      return 'an object';
    }
  }
  // Only primitives are left here (string, number, bigint, boolean, symbol).
  const primitive: string | number | bigint | boolean | symbol = value as string | number | bigint | boolean | symbol;
  let shown = String(primitive);
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`;
  if (typeof value === 'string') shown = `'${shown}'`;
  if (typeof value === 'bigint') shown += 'n';
  return `type ${typeof value} (${shown})`;
}

export function invalidType(name: string, expected: string, value: unknown): Error {
  return codedError(
    'ERR_INVALID_ARG_TYPE',
    `The "${name}" argument must be ${expected}. Received ${describe(value)}`,
    TypeError,
  );
}

export function outOfRange(name: string, expected: string, value: unknown): Error {
  return codedError(
    'ERR_OUT_OF_RANGE',
    `The value of "${name}" is out of range. It must be ${expected}. Received ${String(value)}`,
    RangeError,
  );
}

export function invalidValue(name: string, value: unknown, reason: string): Error {
  return codedError(
    'ERR_INVALID_ARG_VALUE',
    `The argument '${name}' ${reason}. Received ${describe(value)}`,
    TypeError,
  );
}

/** An integer in [min, max]; `TypeError` for a non-number, `RangeError` for NaN, fractions and out-of-range. */
export function validateInteger(value: unknown, name: string, min: number, max: number): asserts value is number {
  if (typeof value !== 'number') throw invalidType(name, 'of type number', value);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw outOfRange(name, `an integer >= ${min} and <= ${max}`, value);
  }
}

export function validateObject(value: unknown, name: string): void {
  // Arrays and typed arrays are objects too, but their methods (filter, ...) would be taken for options: found by
  // the fuzz suite (reclaim(new Uint8Array(4)) called Uint8Array.prototype.filter as the mapping filter).
  if (
    value !== undefined &&
    (value === null || typeof value !== 'object' || Array.isArray(value) || ArrayBuffer.isView(value))
  ) {
    throw invalidType(name, 'of type object', value);
  }
}

export function validateBoolean(value: unknown, name: string): asserts value is boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') throw invalidType(name, 'of type boolean', value);
}

/** A delay for setTimeout: finite, >= 0, and within what timers can hold. */
export function validateTimeout(value: unknown, name: string): asserts value is number | undefined {
  if (value === undefined) return;
  if (typeof value !== 'number') throw invalidType(name, 'of type number', value);
  if (!(value >= 0 && value <= 2 ** 31 - 1)) throw outOfRange(name, '>= 0 and <= 2147483647', value);
}

export function validateAbortSignal(value: unknown, name: string): asserts value is AbortSignal | undefined {
  if (value !== undefined && !(value instanceof AbortSignal))
    throw invalidType(name, 'an instance of AbortSignal', value);
}
