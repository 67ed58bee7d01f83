import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { toGvError } from '../errors.js';

/** The parts of V8's .cpuprofile format (Chrome DevTools Profiler.Profile) we read. */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface SelfTimeEntry {
  /** "functionName file:line" */
  name: string;
  selfMs: number;
  /** share of the non-idle samples */
  percent: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  idleMs: number;
  top: SelfTimeEntry[];
}

function frameName(node: ProfileNode): string {
  const f = node.callFrame;
  const fn = f.functionName || '(anonymous)';
  if (!f.url) return fn;
  const file = f.url.replace(/^file:\/\//, '');
  const short = file.includes('/node_modules/') ? file.slice(file.lastIndexOf('/node_modules/') + 1) : path.relative(process.cwd(), file);
  return `${fn} ${short}:${f.lineNumber + 1}`;
}

/** Self time per function (summed over call sites), highest first. */
export function summarizeProfile(profile: CpuProfile, file: string, topN: number): ProfileSummary {
  const byId = new Map<number, ProfileNode>(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  if (samples.length && deltas.length === samples.length) {
    // a sample's time is the gap to the next sample
    for (let i = 0; i < samples.length; i++) {
      const dt = i + 1 < deltas.length ? deltas[i + 1]! : 0;
      selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + Math.max(0, dt));
    }
  } else {
    const per = samples.length ? (profile.endTime - profile.startTime) / samples.length : 1000;
    for (const n of profile.nodes) if (n.hitCount) selfUs.set(n.id, n.hitCount * per);
  }
  const byName = new Map<string, number>();
  let idle = 0;
  let total = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    total += us;
    const fn = node.callFrame.functionName;
    if (fn === '(idle)') { idle += us; continue; }
    const name = frameName(node);
    byName.set(name, (byName.get(name) ?? 0) + us);
  }
  const busy = Math.max(1, total - idle);
  const top = [...byName.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, topN)
    .map(([name, us]) => ({ name, selfMs: us / 1000, percent: (100 * us) / busy }));
  return { file, totalMs: total / 1000, idleMs: idle / 1000, top };
}

/** Summaries of every .cpuprofile in `dir`. */
export async function summarizeProfiles(dir: string, topN = 20): Promise<ProfileSummary[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.cpuprofile')).sort();
  } catch (err) {
    throw toGvError(err);
  }
  const out: ProfileSummary[] = [];
  for (const n of names) {
    const file = path.join(dir, n);
    const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
    out.push(summarizeProfile(profile, file, topN));
  }
  return out;
}

export function formatProfiles(summaries: readonly ProfileSummary[]): string {
  const out: string[] = [];
  for (const s of summaries) {
    out.push(`cpu profile ${s.file}: ${(s.totalMs / 1000).toFixed(1)} s sampled, ${(s.idleMs / 1000).toFixed(1)} s idle; top self time (share of busy time):`);
    for (const e of s.top) out.push(`  ${e.selfMs.toFixed(0).padStart(7)} ms  ${e.percent.toFixed(1).padStart(5)}%  ${e.name}`);
  }
  return out.join('\n');
}
