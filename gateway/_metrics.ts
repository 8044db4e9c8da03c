/**
 * Metrics in the Prometheus text exposition format (version 0.0.4): counters, gauges and
 * histograms, with labels, kept in memory and rendered at each scrape. Label values come from
 * small fixed sets (a route, a status class, a close reason), never from callers' input, so
 * that no one can grow the series without bound.
 *
 * @module
 */

/** Label names to values. */
export type Labels = Record<string, string>;

/** The content type of {@linkcode MetricsRegistry.render}'s output. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  /** Each series' lines, in the order they were first seen. */
  lines(): string[];
}

/** A counter: only goes up. */
export interface Counter {
  /** Adds `by` (default 1) to the series with these labels. */
  inc(labels?: Labels, by?: number): void;
  /**
   * The series with these labels, to add to with no key made each time (as prom-client's
   * `labels()`): for a series counted on every request.
   */
  series(labels: Labels): { inc(by?: number): void };
}

/** A histogram: counts observations into cumulative buckets, with their sum. */
export interface Histogram {
  /** Records one observation. */
  observe(value: number, labels?: Labels): void;
}

/** Creates metric families and renders them all. */
export class MetricsRegistry {
  readonly #families: Family[] = [];

  /**
   * A counter family.
   *
   * @param name The metric name, ending in `_total` by convention.
   * @param help One line saying what it counts.
   * @returns The counter.
   */
  counter(name: string, help: string): Counter {
    const series = new Map<string, { labels: Labels; value: number }>();
    this.#add({
      name,
      help,
      type: "counter",
      lines: () => [...series.values()].map((s) => sample(name, s.labels, s.value)),
    });
    const entryOf = (labels: Labels | undefined): { labels: Labels; value: number } => {
      // Without labels (most calls, on every request) no key is made.
      const key = labels === undefined ? "" : labelKey(labels);
      let entry = series.get(key);
      if (!entry) series.set(key, entry = { labels: labels ?? {}, value: 0 });
      return entry;
    };
    return {
      inc(labels, by = 1) {
        entryOf(labels).value += by;
      },
      series(labels) {
        // Made at the first `inc`, as `inc(labels)` makes it: no series shows before.
        let entry: { labels: Labels; value: number } | undefined;
        return {
          inc(by = 1) {
            (entry ??= entryOf(labels)).value += by;
          },
        };
      },
    };
  }

  /**
   * A gauge family whose value is read at each scrape.
   *
   * @param name The metric name.
   * @param help One line saying what it measures.
   * @param read The value now, or one value per label set.
   */
  gauge(name: string, help: string, read: () => number | [Labels, number][]): void {
    this.#add({
      name,
      help,
      type: "gauge",
      lines: () => {
        const value = read();
        return typeof value === "number"
          ? [sample(name, {}, value)]
          : value.map(([labels, v]) => sample(name, labels, v));
      },
    });
  }

  /**
   * A histogram family.
   *
   * @param name The metric name (`_bucket`, `_sum` and `_count` are added).
   * @param help One line saying what it measures.
   * @param buckets Upper bounds, ascending (`+Inf` is added).
   * @returns The histogram.
   */
  histogram(name: string, help: string, buckets: readonly number[]): Histogram {
    const series = new Map<string, { labels: Labels; counts: number[]; sum: number; n: number }>();
    this.#add({
      name,
      help,
      type: "histogram",
      lines: () => {
        const out: string[] = [];
        for (const { labels, counts, sum, n } of series.values()) {
          let cumulative = 0;
          buckets.forEach((le, i) => {
            cumulative += counts[i];
            out.push(sample(`${name}_bucket`, { ...labels, le: String(le) }, cumulative));
          });
          out.push(sample(`${name}_bucket`, { ...labels, le: "+Inf" }, n));
          out.push(sample(`${name}_sum`, labels, sum));
          out.push(sample(`${name}_count`, labels, n));
        }
        return out;
      },
    });
    return {
      observe(value, labels) {
        const key = labels === undefined ? "" : labelKey(labels);
        let entry = series.get(key);
        if (!entry) {
          entry = { labels: labels ?? {}, counts: buckets.map(() => 0), sum: 0, n: 0 };
          series.set(key, entry);
        }
        const i = buckets.findIndex((le) => value <= le);
        if (i !== -1) entry.counts[i]++;
        entry.sum += value;
        entry.n++;
      },
    };
  }

  /**
   * Every family, in the text exposition format.
   *
   * @returns The scrape's body.
   */
  render(): string {
    let out = "";
    for (const family of this.#families) {
      out += `# HELP ${family.name} ${family.help}\n# TYPE ${family.name} ${family.type}\n`;
      for (const line of family.lines()) out += `${line}\n`;
    }
    return out;
  }

  #add(family: Family): void {
    if (this.#families.some((f) => f.name === family.name)) {
      throw new TypeError(`Duplicate metric: ${family.name}`);
    }
    this.#families.push(family);
  }
}

/**
 * One series' key, whatever order its labels were given in: each value length-prefixed, so
 * that no two label sets share one. Made on every request, so made cheaply.
 */
function labelKey(labels: Labels): string {
  const names = Object.keys(labels);
  if (names.length > 1) names.sort();
  let key = "";
  for (const name of names) {
    const value = labels[name];
    key += `${name}\u0000${value.length}\u0000${value}`;
  }
  return key;
}

function sample(name: string, labels: Labels, value: number): string {
  const entries = Object.entries(labels);
  const text = entries.length === 0
    ? ""
    : `{${entries.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
  return `${name}${text} ${formatValue(value)}`;
}

function escapeLabel(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll("\n", "\\n").replaceAll('"', '\\"');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}
