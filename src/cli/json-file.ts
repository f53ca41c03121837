/** Reading the JSON files the CLI's commands take (agent specs, cards, keys). */
import { readFile } from 'node:fs/promises';
import { ValidationError } from '../registry/validation.js';

/**
 * Reads and parses the JSON file `file`. Rejects with the file system's error when it cannot be
 * read, and with {@link ValidationError} naming the file when it is not JSON.
 */
export async function readJsonFile(file: string): Promise<unknown> {
  const text = await readFile(file, 'utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new ValidationError(file, `is not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}
