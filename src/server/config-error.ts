// The error for anything a person wrote wrong in a config file, an inline device spec, a size
// or a ranges file. It carries the path of the offending value (`devices.lin.targets[1].device`)
// so the message points at the exact spot; the CLI prints it as `tsblk: <message>` with no
// stack trace.

const kConfigError = Symbol.for('tsblk.ConfigError');

export class ConfigError extends Error {
  /** Where the bad value sits: a config path, `--range`, a file name and line, ... ('' when none). */
  readonly path: string;
  /** The problem without the path. */
  readonly detail: string;

  constructor(path: string, detail: string) {
    super(path ? `${path}: ${detail}` : detail);
    this.name = 'ConfigError';
    this.path = path;
    this.detail = detail;
    Object.defineProperty(this, kConfigError, { value: true });
  }

  /** The same error with a prefix (a file name) in front of its path. */
  within(prefix: string): ConfigError {
    return new ConfigError(this.path ? `${prefix}: ${this.path}` : prefix, this.detail);
  }

  /** True for any ConfigError, also one made by another copy of this module. */
  static is(err: unknown): err is ConfigError {
    return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[kConfigError] === true;
  }
}
