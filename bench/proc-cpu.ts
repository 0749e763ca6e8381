import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU time (ms, user + system) of this process's tree, read from Linux's /proc: each process and
 * each of its threads with the thread's name and nice value. Empty elsewhere. The benchmarks
 * divide differences of these by the requests served.
 */
export interface ProcessCpu {
  pid: number;
  /** The script it runs (the first argument after the executable that is not an option), or '' for this process. */
  script: string;
  ms: number;
  threads: Array<{ tid: number; name: string; nice: number; ms: number }>;
}

function stat(path: string) {
  const st = readFileSync(path, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return {
    name: st.slice(st.indexOf('(') + 1, st.lastIndexOf(')')),
    ppid: Number(f[1]),
    ms: (Number(f[11]) + Number(f[12])) * 10,
    nice: Number(f[16]),
  };
}

export function processTreeCpu(root = process.pid): ProcessCpu[] {
  if (process.platform !== 'linux') return [];
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      parent.set(Number(d), stat(`/proc/${d}/stat`).ppid);
    } catch {
      // exited meanwhile
    }
  }
  const out: ProcessCpu[] = [];
  for (const pid of parent.keys()) {
    let p = pid;
    while (p && p !== root) p = parent.get(p) ?? 0;
    if (p !== root) continue;
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(1);
      const script = pid === root ? '' : (args.find((a) => a !== '' && !a.startsWith('-')) ?? '');
      const threads = readdirSync(`/proc/${pid}/task`).map((tid) => {
        const t = stat(`/proc/${pid}/task/${tid}/stat`);
        return { tid: Number(tid), name: t.name, nice: t.nice, ms: t.ms };
      });
      out.push({ pid, script, ms: stat(`/proc/${pid}/stat`).ms, threads });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}
