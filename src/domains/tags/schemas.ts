import { type Static, Type } from 'typebox';
import { ref } from '../../contract.ts';

export const TagListQuery = Type.Object(
  {
    q: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 50,
        description: 'Only tags starting with this (compared trimmed and lower-cased, as tags are stored).',
      }),
    ),
    limit: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'At most this many tags.' }),
    ),
  },
  { additionalProperties: false },
);
export type TagListQueryType = Static<typeof TagListQuery>;

export const TagCountSchema = Type.Object(
  {
    tag: Type.String(),
    tickets: Type.Integer({ description: 'Tickets you may see that carry the tag now.' }),
  },
  { $id: 'TagCount', additionalProperties: false },
);

export const TagListSchema = Type.Object(
  {
    data: Type.Array(ref(TagCountSchema)),
  },
  {
    $id: 'TagList',
    additionalProperties: false,
    description: 'Tags in use, most used first (then by name).',
  },
);
