/** The package's version, read from the package.json beside dist/ (one source of truth for --version and the API). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { rootDir } from './assets.js';

export const version: string = (JSON.parse(readFileSync(join(rootDir, 'package.json'), 'utf8')) as { version: string }).version;
