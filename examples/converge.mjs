// The library API from your own code: run the demo ring and stop as soon as Array1
// stops changing (a fixed point), the way an optimiser or a sampler would watch it.
//   node examples/converge.mjs
import { demoPipeline, runPipeline } from 'commloop';

let previous;
const result = await runPipeline(demoPipeline(2, 10, 1000, 1000), {
  transport: 'threads',
  iterations: 1000,
  onIteration: (i, array) => {
    const same = previous !== undefined && array.every((v, j) => v === previous[j]);
    previous = Float64Array.from(array);
    if (same) console.log(`iteration ${i}: Array1 did not change, stopping`);
    return !same;
  },
});
console.log(`ran ${result.iterations} of 1000 iterations, checksum ${result.checksum}, ${(result.meanIterS * 1e6).toFixed(1)} us per iteration`);
