// The copy progress bar on stderr (cli-progress): bytes done, throughput and ETA.
//
// - `auto` (default): shown only when stderr is a terminal, and only once a copy has run for
//   AUTO_DELAY_MS, so quick copies print nothing but their summary.
// - `on` (--progress): shown from the start, also when stderr is not a terminal (a line per
//   second then, for logs).
// - `off` (--no-progress): never.

import { SingleBar } from 'cli-progress';
import { formatDuration, formatRate, formatSize, type Output } from './output.js';

export type ProgressMode = 'auto' | 'on' | 'off';
export const AUTO_DELAY_MS = 500;

export interface ProgressSample {
  bytesDone: number;
  bytesTotal: number;
  /** When the source knows better (a copy job's moving average); else computed here. */
  bytesPerSecond?: number;
  etaSeconds?: number;
}

export function progressMode(flag: boolean | undefined): ProgressMode {
  return flag === undefined ? 'auto' : flag ? 'on' : 'off';
}

export class CopyProgressBar {
  readonly #stream: Output;
  readonly #total: number;
  readonly #started = performance.now();
  #bar: SingleBar | undefined;
  #timer: NodeJS.Timeout | undefined;
  #last: ProgressSample;
  #stopped = false;

  constructor(stream: Output, total: number, mode: ProgressMode) {
    this.#stream = stream;
    this.#total = total;
    this.#last = { bytesDone: 0, bytesTotal: total };
    if (mode === 'on') this.#show();
    else if (mode === 'auto' && stream.isTTY === true) {
      this.#timer = setTimeout(() => this.#show(), AUTO_DELAY_MS);
      this.#timer.unref();
    }
  }

  /** True once the bar has been drawn. */
  get shown(): boolean {
    return this.#bar !== undefined;
  }

  update(sample: ProgressSample): void {
    this.#last = sample;
    this.#bar?.update(sample.bytesDone, this.#payload(sample));
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#timer);
    if (this.#bar) {
      this.#bar.update(this.#last.bytesDone, this.#payload(this.#last));
      this.#bar.stop();
    }
  }

  #show(): void {
    if (this.#stopped || this.#bar) return;
    this.#bar = new SingleBar({
      stream: this.#stream as unknown as NodeJS.WritableStream,
      format: 'copy [{bar}] {percentage}% | {done}/{totalSize} | {rate} | ETA {etaText}',
      barCompleteChar: '=',
      barIncompleteChar: '-',
      hideCursor: true,
      // Off a terminal every render ends its line already; clearing avoids a blank line.
      clearOnComplete: this.#stream.isTTY !== true,
      noTTYOutput: true,
      notTTYSchedule: 1000,
      gracefulExit: false,
      etaBuffer: 50,
    });
    this.#bar.start(Math.max(1, this.#total), this.#last.bytesDone, this.#payload(this.#last));
  }

  #payload(s: ProgressSample): Record<string, string> {
    const elapsed = (performance.now() - this.#started) / 1000;
    const rate = s.bytesPerSecond ?? (elapsed > 0 && s.bytesDone > 0 ? s.bytesDone / elapsed : NaN);
    const eta = s.etaSeconds ?? (rate > 0 ? (s.bytesTotal - s.bytesDone) / rate : NaN);
    return {
      done: formatSize(s.bytesDone),
      totalSize: formatSize(s.bytesTotal),
      rate: formatRate(rate),
      etaText: s.bytesDone >= s.bytesTotal ? '0 s' : formatDuration(eta),
    };
  }
}
