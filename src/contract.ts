import { type Static, type TSchema, Type } from 'typebox';

/**
 * Shared building blocks of the HTTP contract. Schemas with an `$id` become named components of
 * the OpenAPI document; embed them elsewhere through `ref`, never inline (a nested `$id` would
 * be registered twice).
 */
export function ref<T extends TSchema & { $id?: string }>(schema: T) {
  if (!schema.$id) throw new Error('ref() needs a schema with an $id');
  return Type.Unsafe<Static<T>>({ $ref: `${schema.$id}#` });
}

export const Uuid = (description?: string) =>
  Type.String({ format: 'uuid', ...(description ? { description } : {}) });

export const Timestamp = (description?: string) =>
  Type.String({ format: 'date-time', ...(description ? { description } : {}) });

/** Human names: 1-100 characters with at least one that is not white space; stored trimmed. */
export const DisplayName = (description: string) =>
  Type.String({ minLength: 1, maxLength: 100, pattern: '\\S', description });

export const IdParams = Type.Object({ id: Uuid() }, { additionalProperties: false });
