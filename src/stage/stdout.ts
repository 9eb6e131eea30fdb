/**
 * A stage's stdout is not the master's: the master's stdout carries the result (and
 * --json must stay one valid object), so whatever a stage prints goes to stderr, each
 * line prefixed with "[stage rank] " so it can be told apart.
 */

/** Sends this thread's process.stdout to stderr; `label()` names the stage and rank printing now. */
export function stdoutToStderr(label: () => string): void {
  let atLineStart = true;
  const write = (chunk: unknown, encoding?: unknown, cb?: unknown): boolean => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString(typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
    const prefix = `[${label()}] `;
    let out = '';
    for (const piece of text.split(/(?<=\n)/)) {
      if (atLineStart && piece) out += prefix;
      out += piece;
      atLineStart = piece.endsWith('\n');
    }
    const done = typeof encoding === 'function' ? encoding : cb;
    return process.stderr.write(out, done as (err?: Error | null) => void);
  };
  process.stdout.write = write as typeof process.stdout.write;
}
