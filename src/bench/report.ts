import { ratio } from './stats.js';
import type { MetricId, SystemResult } from './suite.js';
import { SYSTEM_IDS, SYSTEM_LABELS, type SystemId } from './target.js';

export interface MetricSpec {
  id: MetricId;
  label: string;
  unit: 'MiB/s' | 'ops/s' | 'entries/s';
  /** GrapeVineFS / ganesha must reach this */
  target: number;
}

export const METRICS: readonly MetricSpec[] = [
  { id: 'writeCopy', label: 'seq write, copy tool', unit: 'MiB/s', target: 0.8 },
  { id: 'writeNfsio', label: 'seq write, nfsio', unit: 'MiB/s', target: 0.8 },
  { id: 'readCopy', label: 'seq read, copy tool', unit: 'MiB/s', target: 0.8 },
  { id: 'readNfsio', label: 'seq read, nfsio', unit: 'MiB/s', target: 0.8 },
  { id: 'create', label: 'small: create+write', unit: 'ops/s', target: 1.0 },
  { id: 'stat', label: 'small: stat', unit: 'ops/s', target: 1.0 },
  { id: 'list', label: 'small: list', unit: 'entries/s', target: 1.0 },
  { id: 'read', label: 'small: read', unit: 'ops/s', target: 1.0 },
  { id: 'unlink', label: 'small: unlink', unit: 'ops/s', target: 1.0 },
];

export type Verdict = 'met' | 'not met' | 'n/a';

export interface ComparisonRow {
  metric: MetricId;
  label: string;
  unit: string;
  values: Partial<Record<SystemId, { best: number; median: number; runs: number[] } | { error: string }>>;
  ratioBest: number | null;
  ratioMedian: number | null;
  target: number;
  /** judged on the best-of-N ratio (the machine is shared and noisy) */
  verdict: Verdict;
}

export interface BenchReport {
  startedAt: string;
  params: { runs: number; bigBytes: number; smallCount: number; smallSize: number; baseDir: string };
  systems: Partial<Record<SystemId, SystemResult>>;
  rows: ComparisonRow[];
  notes: string[];
}

export function buildRows(systems: Partial<Record<SystemId, SystemResult>>): ComparisonRow[] {
  return METRICS.map((spec) => {
    const values: ComparisonRow['values'] = {};
    for (const id of SYSTEM_IDS) {
      const r = systems[id];
      if (!r) continue;
      const m = r.metrics[spec.id];
      if (m) values[id] = { best: m.best, median: m.median, runs: m.values };
      else if (r.skipped) values[id] = { error: `skipped: ${r.skipped}` };
      else values[id] = { error: r.errors[spec.id] ?? r.errors.info ?? r.errors.start ?? r.errors.smallfiles ?? 'not measured' };
    }
    const gv = systems.gv?.metrics[spec.id];
    const ga = systems.ganesha?.metrics[spec.id];
    const ratioBest = ratio(gv?.best, ga?.best);
    const ratioMedian = ratio(gv?.median, ga?.median);
    const gvFailed = systems.gv && !gv && !systems.gv.skipped && ga;
    const verdict: Verdict = ratioBest !== null ? (ratioBest >= spec.target ? 'met' : 'not met') : gvFailed ? 'not met' : 'n/a';
    return { metric: spec.id, label: spec.label, unit: spec.unit, values, ratioBest, ratioMedian, target: spec.target, verdict };
  });
}

function fmtRate(v: number): string {
  if (!Number.isFinite(v)) return '-';
  return v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(1);
}

/** two decimals, rounded down, so a ratio just under a target never prints as the target */
function fmtRatio(r: number | null | undefined): string {
  return r === null || r === undefined ? '-' : `${(Math.floor(r * 100) / 100).toFixed(2)}x`;
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

/** The human table: best / median per system, the GrapeVineFS/ganesha ratio and the verdict. */
export function formatTable(report: BenchReport): string {
  const present = SYSTEM_IDS.filter((id) => report.systems[id]);
  const head = ['metric', 'unit', ...present.map((id) => `${SYSTEM_LABELS[id]} best/med`), 'gv/ganesha best (med)', 'target', 'status'];
  const body: string[][] = report.rows.map((row) => [
    row.label,
    row.unit,
    ...present.map((id) => {
      const v = row.values[id];
      if (!v) return '-';
      if ('error' in v) return v.error.startsWith('skipped') ? 'skipped' : v.error === 'not measured' ? 'not run' : 'FAILED';
      return `${fmtRate(v.best)} / ${fmtRate(v.median)}`;
    }),
    row.ratioBest === null ? '-' : `${fmtRatio(row.ratioBest)} (${fmtRatio(row.ratioMedian)})`,
    `>= ${row.target.toFixed(1)}x`,
    row.verdict,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => pad(c, widths[i]!, i >= 2 && i < 2 + present.length + 1)).join('  ').trimEnd();
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)];
  const p = report.params;
  out.unshift(
    `GrapeVineFS bench ${report.startedAt}: ${p.runs} runs each; big file ${(p.bigBytes / 1048576).toFixed(0)} MiB ` +
      `(1 MiB pwrite/pread); ${p.smallCount} small files of ${p.smallSize} B; base dir ${p.baseDir}`,
    '',
  );
  out.push('');
  for (const id of present) {
    const r = report.systems[id]!;
    const where = r.skipped ? `skipped (${r.skipped})` : r.location;
    const rw = r.readmax ? `, rtmax ${r.readmax} wtmax ${r.writemax}` : '';
    out.push(`${SYSTEM_LABELS[id]}: ${where}${rw}; copy tool: ${r.copyTool}`);
    for (const [k, msg] of Object.entries(r.errors)) out.push(`  ${k} FAILED: ${msg}`);
  }
  const judged = report.rows.filter((r) => r.verdict !== 'n/a');
  if (judged.length) {
    const met = judged.filter((r) => r.verdict === 'met').length;
    out.push(`targets: ${met} of ${judged.length} met (read/write >= 0.8x ganesha, small-file ops >= 1.0x; judged on best of ${p.runs})`);
  } else {
    out.push('targets: not judged (needs both GrapeVineFS and nfs-ganesha figures)');
  }
  for (const n of report.notes) out.push(`note: ${n}`);
  return out.join('\n');
}

/** The --json form: everything, rates as plain numbers. */
export function toJson(report: BenchReport): string {
  return JSON.stringify(report, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2);
}
