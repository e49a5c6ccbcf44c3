import type { tempDir } from '@portcullis/harness';
import type { Row } from './measure.js';

/** KRL figures; filled in once cert-core's KRL module lands. */
export async function krlRows(_dir: ReturnType<typeof tempDir>, _rounds: number): Promise<Row[]> {
  return [];
}
