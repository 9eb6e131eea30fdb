// npm test: every test/*.test.mjs under uvu, one file at a time, each in a process of its own
// (a file's beds and MPI runs never meet the next file's), then each file's time, slowest
// first, so the next slow file is visible, and uvu's own totals summed in uvu's form
// ("Total: N", "Passed: N", "Skipped: N"), which .ci/run reads.
//   node scripts/test.mjs [PATTERN]   only the files whose name matches PATTERN (a regex)
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const pattern = new RegExp(process.argv[2] ?? '');
const files = readdirSync(join(root, 'test'))
  .filter((f) => /\.test\.mjs$/.test(f) && pattern.test(f))
  .sort();
const uvu = join(root, 'node_modules', 'uvu', 'bin.js');

/** Runs one file under uvu, its output passed through; its totals and time. */
function runFile(file) {
  const t0 = performance.now();
  return new Promise((resolve) => {
    // The file's name as uvu's pattern, anchored: only that file.
    const child = spawn(process.execPath, [uvu, 'test', `^${file.replaceAll('.', '\\.')}$`, '--no-color'], { cwd: root, stdio: ['inherit', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (b) => {
      out += b;
      process.stdout.write(b);
    });
    child.on('close', (code, signal) => {
      const num = (name) => Number(new RegExp(`^ *${name}: *(\\d+)`, 'm').exec(out)?.[1] ?? NaN);
      const [total, passed, skipped] = [num('Total'), num('Passed'), num('Skipped')];
      const s = (performance.now() - t0) / 1000;
      // No summary: the file threw on load or its process was killed; one failure, said.
      if (Number.isNaN(total)) resolve({ file, total: 1, passed: 0, skipped: 0, s, broken: `no summary (exit ${code ?? signal})` });
      else resolve({ file, total, passed, skipped: skipped || 0, s, broken: code !== 0 && passed + (skipped || 0) === total ? `exit ${code ?? signal}` : undefined });
    });
  });
}

const results = [];
for (const file of files) results.push(await runFile(file));

const sum = (k) => results.reduce((a, r) => a + r[k], 0);
const total = sum('total');
const passed = sum('passed');
const skipped = sum('skipped');
const broken = results.filter((r) => r.broken);
const failed = total - passed - skipped + broken.filter((r) => r.total === r.passed + r.skipped).length;
const width = Math.max(...results.map((r) => r.file.length));
console.log('\nTime per file, slowest first:');
for (const r of [...results].sort((a, b) => b.s - a.s)) {
  const bad = r.total - r.passed - r.skipped;
  console.log(`  ${r.file.padEnd(width)}  ${r.s.toFixed(1).padStart(6)} s  ${r.passed}/${r.total} passed${r.skipped ? `, ${r.skipped} skipped` : ''}${bad ? `, ${bad} failed` : ''}${r.broken ? ` (${r.broken})` : ''}`);
}
console.log(`  ${'all files'.padEnd(width)}  ${sum('s').toFixed(1).padStart(6)} s`);
console.log(`\n  Total:     ${total + broken.filter((r) => r.total === r.passed + r.skipped).length}\n  Passed:    ${passed}\n  Skipped:   ${skipped}\n`);
process.exitCode = failed > 0 || total === 0 ? 1 : 0;
