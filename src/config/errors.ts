// One error type for bad configuration: every problem found, each naming the
// option and where the value came from, so an operator fixes them in one go.
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.length === 1 ? problems[0]! : `invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
  }
}
