// Reads what a guest script printed with test/vm/guest/lib.sh's conventions: `fact: KEY=VALUE`
// lines and `check ok:` / `check FAILED:` lines. A missing fact is an error that quotes the end
// of the output, so a failed interop test says where the guest script stopped.

export class GuestFacts {
  private readonly facts = new Map<string, string[]>();
  constructor(readonly stdout: string) {
    for (const line of stdout.split('\n')) {
      const m = /^fact: ([\w.-]+)=(.*)$/.exec(line);
      if (!m) continue;
      const key = m[1] as string;
      const list = this.facts.get(key) ?? [];
      list.push(m[2] as string);
      this.facts.set(key, list);
    }
  }

  /** The last value of `key`; throws when the script never printed it. */
  get(key: string): string {
    const v = this.facts.get(key)?.at(-1);
    if (v === undefined) {
      throw new Error(`the guest script printed no fact '${key}'; its output ended with:\n${this.tail(25)}`);
    }
    return v;
  }

  /** Every value of `key`, in order (empty when none). */
  all(key: string): string[] {
    return this.facts.get(key) ?? [];
  }

  /** `check FAILED:` lines. */
  failedChecks(): string[] {
    return this.stdout.split('\n').filter((l) => l.startsWith('check FAILED:'));
  }

  /** The transcript of one `section "TITLE"` of a guest script (from its ==== line to the next). */
  section(title: string): string {
    const lines = this.stdout.split('\n');
    const start = lines.findIndex((l) => l.startsWith('==== ') && l.includes(title));
    if (start < 0) return `(no section "${title}" in the transcript)`;
    const end = lines.findIndex((l, i) => i > start && l.startsWith('==== '));
    return lines.slice(start, end < 0 ? undefined : end).join('\n');
  }

  tail(n: number): string {
    return this.stdout.trimEnd().split('\n').slice(-n).join('\n');
  }
}

/** One line on how a guest run went: the build, boot and script times, its timed parts. */
export function guestRunSummary(
  run: {
    stdout: string;
    kernelVersion: string;
    bootMs: number;
    commandMs: number;
    totalMs: number;
    attempts: number;
  },
  built: string,
): string {
  const parts = [...run.stdout.matchAll(/^fact: part_(\w+)_s=(.*)$/gm)].map((m) => `${m[1]} ${m[2]} s`);
  const s = (ms: number) => (ms / 1000).toFixed(1);
  return (
    `${built}; guest kernel ${run.kernelVersion}: boot ${s(run.bootMs)} s, guest script ` +
    `${s(run.commandMs)} s (${parts.join(', ')}), total ${s(run.totalMs)} s, ${run.attempts} boot(s)`
  );
}
