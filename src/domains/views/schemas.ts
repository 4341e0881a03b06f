import { type Static, Type } from 'typebox';
import { ref, Timestamp, Uuid } from '../../contract.ts';
import { PageQuery } from '../../plugins/pagination.ts';
import { SavedRepeatableFilterFields, TICKET_SORTS, TicketFilterFields } from '../tickets/schemas.ts';

export const VIEW_SCOPES = ['personal', 'department', 'helpdesk'] as const;

/** At most this many views per owner, per department and for the help desk. */
export const MAX_VIEWS_PER_HOLDER = 50;

/** Counts stop here: a sidebar shows "1000+" (`capped: true`); why, docs/tickets.md "Saved views". */
export const VIEW_COUNT_CAP = 1000;

// A view filters the ticket list with the list's own parameters (the same schema, so a filter
// the list refuses cannot be saved), as JSON arrays where the list repeats a parameter. Not
// contact_id: a view over one customer's tickets is that contact's page.
const { contact_id: _contact, ...viewFilterFields } = TicketFilterFields;

const FILTERS_DESCRIPTION =
  'The parameters of GET /v1/tickets (without page and sort), repeatable ones as arrays. assignee_id me is whoever reads the view.';

export const ViewFiltersSchema = Type.Object(viewFilterFields, {
  additionalProperties: false,
  description: FILTERS_DESCRIPTION,
});
export type ViewFilters = Static<typeof ViewFiltersSchema>;

// What a view holds may predate minItems: the answer must not promise what stored rows break.
const SavedViewFiltersSchema = Type.Object(
  { ...viewFilterFields, ...SavedRepeatableFilterFields },
  {
    additionalProperties: false,
    description: `${FILTERS_DESCRIPTION} An empty list, saved before they were refused, matches no ticket (tag: any ticket).`,
  },
);

const Scope = Type.Enum(VIEW_SCOPES, {
  description:
    'personal: yours only; department: that department’s members see it, its managers and admins manage it; helpdesk: everyone sees it, owners and admins manage it.',
});
// The list's sort without its default: Ajv would fill a default into every PATCH body.
const Sort = Type.Enum(TICKET_SORTS, {
  description: 'As GET /v1/tickets sorts (default -created_at).',
});
const Name = Type.String({ minLength: 1, maxLength: 100, pattern: '\\S' });
const Position = Type.Integer({
  minimum: 0,
  maximum: 1_000_000,
  description: 'Sidebar order, smallest first; views without one come after, by name.',
});

export const ViewSchema = Type.Object(
  {
    id: Uuid(),
    name: Type.String(),
    scope: Scope,
    department_id: Type.Union([Uuid(), Type.Null()], { description: 'Set for department views.' }),
    owner_agent_id: Type.Union([Uuid(), Type.Null()], { description: 'Set for personal views.' }),
    filters: SavedViewFiltersSchema,
    sort: Sort,
    position: Type.Union([Position, Type.Null()]),
    created_at: Timestamp(),
    updated_at: Timestamp(),
  },
  { $id: 'View', additionalProperties: false },
);
export type View = Static<typeof ViewSchema>;

export const CreateViewBody = Type.Object(
  {
    name: Name,
    scope: Type.Optional(
      Type.Enum(VIEW_SCOPES, { description: 'personal (default), department or helpdesk.' }),
    ),
    department_id: Type.Optional(Uuid('Required with scope department, refused otherwise.')),
    filters: Type.Optional(ViewFiltersSchema),
    sort: Type.Optional(Sort),
    position: Type.Optional(Type.Union([Position, Type.Null()])),
  },
  {
    additionalProperties: false,
    examples: [
      {
        name: 'My urgent ones',
        filters: { assignee_id: ['me'], priority: ['urgent', 'high'], status: ['new', 'open'] },
        sort: 'sla_due_at',
      },
    ],
  },
);
export type CreateViewInput = Static<typeof CreateViewBody>;

export const UpdateViewBody = Type.Object(
  {
    name: Type.Optional(Name),
    filters: Type.Optional(ViewFiltersSchema),
    sort: Type.Optional(Sort),
    position: Type.Optional(Type.Union([Position, Type.Null()])),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    description: 'filters replace the saved ones as a whole. Scope and department do not change.',
    examples: [{ filters: { status: ['new'] } }],
  },
);
export type UpdateViewInput = Static<typeof UpdateViewBody>;

export const ViewListSchema = Type.Object(
  { data: Type.Array(ref(ViewSchema)) },
  { $id: 'ViewList', additionalProperties: false },
);

export const ViewCountsSchema = Type.Object(
  {
    cap: Type.Integer({ description: 'Counts stop here.' }),
    data: Type.Array(
      Type.Object(
        {
          view_id: Uuid(),
          count: Type.Integer({ description: 'Tickets of the view you may see, at most `cap`.' }),
          capped: Type.Boolean({ description: 'true: there are more than `cap` (show "1000+").' }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { $id: 'ViewCounts', additionalProperties: false },
);
export type ViewCounts = Static<typeof ViewCountsSchema>;

export const ViewTicketsQuery = Type.Object(PageQuery, { additionalProperties: false });
