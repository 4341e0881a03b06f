export * from './access.ts';
export * from './catalogue.ts';
export * from './consumer.ts';
export * from './repository.ts';
