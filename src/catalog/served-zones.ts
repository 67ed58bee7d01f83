import fs from 'node:fs';
import type { Logger } from 'pino';
import { assignZoneIds, sqliteZoneIds } from '../config/zone-ids.js';
import type { Config } from '../config/types.js';
import { GvError } from '../errors.js';
import type { GvDatabase } from '../journal/db.js';
import type { MountExport } from '../mount/program.js';
import type { ZoneRegistry } from '../nfs/program.js';
import { matchesAny, type Cidr } from '../util/cidr.js';
import { formatSize } from '../util/size.js';
import { LocalZoneFs } from '../vfs/local.js';
import type { ZoneFs } from '../vfs/types.js';
import { Zfs } from '../zfs/zfs.js';
import { datasetPath } from './backing.js';
import { Catalog } from './catalog.js';

/** A zone this node serves, as resolved from the config file or the catalog. */
export interface ServedZone {
  name: string;
  /** Directory served (a dataset's mountpoint for ZFS zones). */
  path: string;
  /** Quota the daemon enforces (directory zones); null for ZFS zones (ZFS enforces) or none. */
  quotaBytes: number | null;
  allow: Cidr[];
  source: 'config' | 'catalog';
  dataset: string | null;
}

export interface DesiredZones {
  zones: ServedZone[];
  /** Zones that cannot be served, one line each (logged, reported by reload). */
  errors: string[];
}

const sameAllow = (a: readonly Cidr[], b: readonly Cidr[]): boolean =>
  a.length === b.length && a.every((c, i) => c.text === b[i]!.text);

/**
 * What this node should serve: zones declared in the config file, plus catalog zones this node
 * is a member of and has a backing for. A name in both must describe the same storage and quota.
 * With `strict`, a declared zone that cannot be resolved (dataset missing) throws.
 */
export async function desiredZones(config: Config, catalog: Catalog, zfs: Zfs, strict: boolean): Promise<DesiredZones> {
  const zones: ServedZone[] = [];
  const errors: string[] = [];
  const problem = (msg: string) => {
    if (strict) throw new GvError('CONFIG', msg);
    errors.push(msg);
  };
  const declared = new Map<string, ServedZone>();
  for (const zc of config.zones) {
    let p = zc.path;
    if (zc.dataset) {
      try {
        p = await datasetPath(zfs, zc.dataset);
      } catch (err) {
        problem(`zone ${zc.name}: dataset ${zc.dataset}: ${(err as Error).message}`);
        continue;
      }
    }
    const z: ServedZone = { name: zc.name, path: p, quotaBytes: zc.quotaBytes, allow: zc.allow, source: 'config', dataset: zc.dataset };
    declared.set(z.name, z);
    zones.push(z);
  }
  for (const cz of catalog.list()) {
    if (!cz.members.includes(config.node.name) || !cz.backing) continue;
    const b = cz.backing;
    const mine = declared.get(cz.name);
    if (mine) {
      const same = b.kind === 'zfs'
        ? mine.dataset === b.dataset
        : mine.dataset === null && mine.path === b.path && mine.quotaBytes === cz.quotaBytes;
      if (!same) {
        problem(`zone ${cz.name} is declared in ${config.file ?? 'the config'} and in the catalog with different storage or quota; rename or remove one of them`);
      }
      continue;
    }
    let p: string;
    try {
      p = b.kind === 'zfs' ? await datasetPath(zfs, b.dataset) : b.path;
    } catch (err) {
      errors.push(`zone ${cz.name}: ${(err as Error).message}`);
      continue;
    }
    zones.push({
      name: cz.name, path: p, quotaBytes: b.kind === 'dir' ? cz.quotaBytes : null, allow: config.cluster.zoneAllow,
      source: 'catalog', dataset: b.kind === 'zfs' ? b.dataset : null,
    });
  }
  return { zones, errors };
}

export interface ApplyResult {
  opened: string[];
  closed: string[];
  changed: string[];
  errors: string[];
}

interface Entry {
  spec: ServedZone;
  zone: LocalZoneFs;
  /** What NFS and MOUNT see: `zone`, or the wrapper `attach` made of it (journaling). */
  served: ZoneFs;
}

/** Wraps a freshly opened zone (the journal); the wrapper's close() closes the zone too. */
export type ZoneAttach = (zone: LocalZoneFs, spec: ServedZone) => Promise<ZoneFs>;

/**
 * The zones the daemon serves, changeable while it runs: `apply()` opens new zones (MOUNT sees
 * them at once), applies quota and allow-list changes in place, and closes zones that went away
 * (their handles then answer STALE). Connections are never touched. Applies run one at a time.
 */
export class ServedZoneSet {
  private readonly entries = new Map<string, Entry>();
  private readonly byId = new Map<number, ZoneFs>();
  private exportList: MountExport[] = [];
  private zoneList: ZoneFs[] = [];
  private readonly allowCache = new Map<string, boolean>();
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly db: GvDatabase, private readonly log: Logger, private readonly attach?: ZoneAttach) {}

  /** For the NFS program: lookups by zone id and the allow check of every call. */
  readonly registry: ZoneRegistry & { allows(zoneId: number, address: string): boolean } = {
    byId: (id) => this.byId.get(id),
    list: () => this.zoneList,
    allows: (id, address) => {
      // Checked on every NFS call: memoise per (zone, address), bounded; cleared by apply().
      const key = `${id} ${address}`;
      let ok = this.allowCache.get(key);
      if (ok === undefined) {
        const z = this.byId.get(id);
        ok = z ? matchesAny(address, this.entries.get(z.name)?.spec.allow ?? []) : false;
        if (this.allowCache.size >= 4096) this.allowCache.clear();
        this.allowCache.set(key, ok);
      }
      return ok;
    },
  };

  exports = (): readonly MountExport[] => this.exportList;

  zones(): readonly ZoneFs[] {
    return this.zoneList;
  }

  get(name: string): LocalZoneFs | undefined {
    return this.entries.get(name)?.zone;
  }

  specs(): ServedZone[] {
    return [...this.entries.values()].map((e) => e.spec);
  }

  /** Bring the served set to `desired`. With `strict`, a zone that fails to open throws. */
  apply(desired: readonly ServedZone[], strict = false): Promise<ApplyResult> {
    const run = this.chain.then(() => this.applyNow(desired, strict));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async applyNow(desired: readonly ServedZone[], strict: boolean): Promise<ApplyResult> {
    const res: ApplyResult = { opened: [], closed: [], changed: [], errors: [] };
    const want = new Map(desired.map((z) => [z.name, z]));
    // Close first: zones gone, or now stored elsewhere (reopened below).
    for (const [name, e] of [...this.entries]) {
      const w = want.get(name);
      if (w && w.path === e.spec.path) continue;
      this.entries.delete(name);
      this.byId.delete(e.zone.zoneId);
      this.publish();
      await e.served.close().catch((err) => this.log.warn({ zone: name, err: String(err) }, 'error closing zone'));
      res.closed.push(name);
      this.log.info({ zone: name }, 'zone closed');
    }
    const ids = assignZoneIds(sqliteZoneIds(this.db.sqlite), desired.map((z) => z.name));
    for (const spec of desired) {
      const e = this.entries.get(spec.name);
      if (e) {
        if (e.spec.quotaBytes !== spec.quotaBytes || !sameAllow(e.spec.allow, spec.allow) || e.spec.source !== spec.source) {
          e.zone.setQuota(spec.quotaBytes ?? undefined);
          e.spec = spec;
          res.changed.push(spec.name);
          this.log.info({ zone: spec.name, quota: spec.quotaBytes === null ? null : formatSize(spec.quotaBytes) }, 'zone changed');
        }
        continue;
      }
      try {
        fs.mkdirSync(spec.path, { recursive: true });
        const zone = await LocalZoneFs.open({
          name: spec.name, zoneId: ids.get(spec.name)!, root: spec.path, db: this.db,
          quotaBytes: spec.quotaBytes === null ? undefined : BigInt(spec.quotaBytes),
        });
        let served: ZoneFs = zone;
        if (this.attach) {
          try {
            served = await this.attach(zone, spec);
          } catch (err) {
            await zone.close().catch(() => undefined);
            throw err;
          }
        }
        this.entries.set(spec.name, { spec, zone, served });
        this.byId.set(zone.zoneId, served);
        res.opened.push(spec.name);
        this.log.info({
          zone: spec.name, zoneId: zone.zoneId, path: spec.path, source: spec.source, dataset: spec.dataset,
          quota: spec.quotaBytes === null ? null : formatSize(spec.quotaBytes), allow: spec.allow.map((c) => c.text),
        }, 'zone open');
      } catch (err) {
        if (strict) {
          this.publish();
          throw err;
        }
        const msg = `zone ${spec.name}: ${(err as Error).message}`;
        res.errors.push(msg);
        this.log.error({ zone: spec.name, err: String(err) }, 'zone cannot be opened');
      }
    }
    this.publish();
    return res;
  }

  /** Rebuild the lists the NFS and MOUNT programs read (new arrays: readers keep a consistent one). */
  private publish(): void {
    const list = [...this.entries.values()];
    this.zoneList = list.map((e) => e.served);
    this.exportList = list.map((e) => ({ zone: e.served, allow: e.spec.allow }));
    this.allowCache.clear();
  }

  async closeAll(): Promise<void> {
    await this.chain;
    const list = [...this.entries.values()];
    this.entries.clear();
    this.byId.clear();
    this.publish();
    for (const e of list.reverse()) await e.served.close().catch(() => undefined);
  }
}

/** Everything a running daemon needs to (re)build its zone set. */
export interface ZoneService {
  set: ServedZoneSet;
  catalog: Catalog;
  /** Re-read config (when it came from a file) and catalog, and apply. */
  reload(): Promise<ApplyResult & { catalogVersion: number }>;
}

/**
 * Open the zones at start (declared zones must open, or start fails; catalog zones that cannot be
 * served are logged and skipped) and return the service that reloads them.
 */
export async function startZoneService(
  config: Config, db: GvDatabase, log: Logger, reloadConfig: () => Config, zfs = new Zfs(), attach?: ZoneAttach,
): Promise<ZoneService> {
  const catalog = new Catalog(db);
  const set = new ServedZoneSet(db, log, attach);
  const first = await desiredZones(config, catalog, zfs, true);
  for (const e of first.errors) log.error({}, e);
  // Declared zones open strictly; catalog zones one by one, errors logged.
  await set.apply(first.zones.filter((z) => z.source === 'config'), true);
  const r = await set.apply(first.zones);
  for (const e of r.errors) log.error({}, e);
  return {
    set,
    catalog,
    reload: async () => {
      let cfg: Config;
      const errors: string[] = [];
      try {
        cfg = reloadConfig();
      } catch (err) {
        // A broken config file keeps its declared zones as they were; the catalog still applies.
        errors.push(`config not reloaded: ${(err as Error).message}`);
        cfg = config;
      }
      const d = await desiredZones(cfg, catalog, zfs, false);
      const res = await set.apply(d.zones);
      res.errors.unshift(...errors, ...d.errors);
      for (const e of res.errors) log.error({}, e);
      log.info({ opened: res.opened, closed: res.closed, changed: res.changed, errors: res.errors.length }, 'zones reloaded');
      return { ...res, catalogVersion: catalog.version() };
    },
  };
}
