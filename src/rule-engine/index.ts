// The pure rule engine: validate rules when they are written, compile a rule set once, evaluate
// it per ticket event. No I/O, no clock, no global mutable state; see docs/rules.md.
export {
  type CompiledRules,
  compileRules,
  RuleSetError,
} from './compile.ts';
export { type EvaluateOptions, evaluate } from './evaluate.ts';
export {
  CHANGE_OPERATORS,
  CUSTOM_PREFIX,
  FIELDS,
  type FieldSpec,
  type FieldType,
  isEventField,
  OPERATORS_BY_TYPE,
  operatorsFor,
  PREVIOUS_PREFIX,
  VALUE_KIND,
  type ValueKind,
} from './fields.ts';
export { type CompiledSelection, compileSelection, firstMatch, type Selectable } from './select.ts';
export { fittingTags, foldText, LIMITS, tagBytes } from './text.ts';
export * from './types.ts';
export { pointerToken, validateRule } from './validate.ts';
