/** Zone quota/usage for the scrape-time gauges, read from whatever backend serves the zone. */
import type { CallContext, ZoneFs } from '../vfs/types.js';
import type { ZoneUsage } from './registry.js';

const METRICS_CTX: CallContext = { uid: 0, gid: 0, gids: [], client: 'metrics', origin: 'local' };

/** What the local backend exposes (LocalZoneFs): its enforced quota and its usage tracker. */
interface UsageTracking {
  quotaBytes?: bigint;
  usage: { used: bigint };
}

function tracking(zone: ZoneFs): UsageTracking | null {
  // Wrappers (journaled, gated, metered) expose what they wrap as `inner`: find the backend.
  let base = zone;
  for (let i = 0; i < 8; i++) {
    const inner = (base as ZoneFs & { inner?: ZoneFs }).inner;
    if (!inner) break;
    base = inner;
  }
  const t = base as unknown as Partial<UsageTracking>;
  return t.usage && typeof t.usage.used === 'bigint' ? (t as UsageTracking) : null;
}

/**
 * Quota and usage of each zone: the backend's own counters when it keeps them (no I/O), else
 * FSSTAT of the zone root (used = total - free; no quota reported). A zone that fails is skipped.
 */
export async function collectZoneUsage(zones: Iterable<ZoneFs>): Promise<ZoneUsage[]> {
  const out: ZoneUsage[] = [];
  for (const zone of zones) {
    const t = tracking(zone);
    if (t) {
      out.push({ zone: zone.name, quotaBytes: t.quotaBytes ?? null, usedBytes: t.usage.used });
      continue;
    }
    try {
      const { stat } = await zone.fsstat(METRICS_CTX, zone.rootId);
      out.push({ zone: zone.name, quotaBytes: null, usedBytes: stat.totalBytes - stat.freeBytes });
    } catch {
      /* closed or unreachable: no sample this scrape */
    }
  }
  return out;
}
