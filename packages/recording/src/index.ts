export * from './errors.js';
export * from './model.js';
export * from './sftp.js';
export * from './typed-lines.js';
export * from './screen.js';
export { recordingKeys, indexKeys, checkRecordingId, streamId, parseStreamId } from './keys.js';
export { encodeEvent, decodeEvent, canonicalEventBytes, metaToFields, metaFromFields } from './codec.js';
export { initialDigest, chainDigest, signedRecordingPayload } from './digest.js';
