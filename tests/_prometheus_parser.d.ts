// Types for the npm package `parse-prometheus-text-format`, which ships none.

/** One series of a family. Values are strings, as written. */
export interface ParsedMetric {
  labels?: Record<string, string>;
  value?: string;
  buckets?: Record<string, string>;
  count?: string;
  sum?: string;
}

/** One family: its name, help, type and series. */
export interface ParsedFamily {
  name: string;
  help: string;
  type: "COUNTER" | "GAUGE" | "HISTOGRAM" | "SUMMARY" | "UNTYPED";
  metrics: ParsedMetric[];
}

/** Parses Prometheus text format. */
export default function parsePrometheusTextFormat(text: string): ParsedFamily[];
