// The Redis connection lives in @portcullis/store, which every process shares; auth re-exports
// it so its modules and callers keep one import for their store.
export * from '@portcullis/store';
