/** `[metrics]` settings: defaults and the check of the raw TOML table (used by config/load.ts). */
import type { RawConfig } from '../config/schema.js';
import type { MetricsConfig } from '../config/types.js';
import { GvError } from '../errors.js';
import { parseAddress } from '../util/cidr.js';

/** 9586: unassigned by IANA and not in Prometheus' default-port list, next to node_exporter's range. */
export const METRICS_DEFAULTS: Readonly<MetricsConfig> = { enabled: true, listen: '127.0.0.1', port: 9586 };

/** The effective settings of a loaded config (the defaults when it has no `[metrics]`). */
export function effectiveMetricsConfig(cfg: MetricsConfig | undefined): MetricsConfig {
  return cfg ?? { ...METRICS_DEFAULTS };
}

/** Build MetricsConfig from the parsed `[metrics]` table; errors name the file and key. */
export function metricsConfigFromRaw(raw: RawConfig['metrics'], file: string): MetricsConfig {
  const m = raw ?? {};
  const listen = m.listen ?? METRICS_DEFAULTS.listen;
  if (!parseAddress(listen)) {
    throw new GvError('CONFIG', `${file}: metrics.listen: "${listen}" is not an IPv4 or IPv6 address`, { file, key: 'metrics.listen' });
  }
  return { enabled: m.enabled ?? METRICS_DEFAULTS.enabled, listen, port: m.port ?? METRICS_DEFAULTS.port };
}
