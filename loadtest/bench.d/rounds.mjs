// Side-by-side measurements on a shared machine: variants alternate over the rounds (A B, B A,
// ...) so drift hits both, and each figure is reported as its median.

/** Runs `measure(name, env)` for every variant in every round; returns the runs, in order. */
export async function alternate(rounds, variants, measure) {
  const runs = [];
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? Object.keys(variants) : Object.keys(variants).reverse();
    for (const name of order) {
      const r = await measure(name, variants[name]);
      console.error(JSON.stringify(r));
      runs.push({ round, ...r });
    }
  }
  return runs;
}

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Per variant, the median of each of `keys` over its runs. */
export function medians(runs, variants, keys) {
  return Object.keys(variants).map((variant) => {
    const mine = runs.filter((r) => r.variant === variant);
    return Object.fromEntries([['variant', variant], ...keys.map((k) => [k, median(mine.map((r) => r[k]))])]);
  });
}
