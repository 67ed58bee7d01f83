import type { Cidr } from '../util/cidr.js';

export type PortmapMode = 'auto' | 'on' | 'off';
export type SquashMode = 'none' | 'root' | 'all';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface ZoneConfig {
  /** Export path is `/<name>`. */
  name: string;
  /** Absolute directory (or dataset mountpoint) served. */
  path: string;
  /** Bytes, or null when unlimited. */
  quotaBytes: number | null;
  allow: Cidr[];
}

export interface NfsConfig {
  listen: string;
  port: number;
  mountPort: number;
  portmap: PortmapMode;
  maxRecordSize: number | null;
  requirePrivilegedPort: boolean;
  squash: SquashMode;
  anonUid: number;
  anonGid: number;
}

export interface Config {
  /** The file it was loaded from (null for a built-in config such as --demo). */
  file: string | null;
  node: { name: string; stateDir: string | null; logLevel: LogLevel };
  nfs: NfsConfig;
  zones: ZoneConfig[];
}
